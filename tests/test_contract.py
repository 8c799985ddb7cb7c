"""Input contract: a compliant cube passes; each kind of break is reported, all at once."""
from __future__ import annotations

import numpy as np
import pytest

from ciml_ter.data.contract import canonical_units, check_cube, require_contract
from ciml_ter.data.cube import open_cube, write_zarr
from ciml_ter.errors import InputError

from _support import make_cube as _cube


def test_compliant_cube_has_no_problems():
    assert check_cube(_cube()) == []


def test_nirv_given_instead_of_red_is_fine():
    ds = _cube().drop_vars("red")
    ds["nirv"] = (ds.nir * 0.5).assign_attrs(units="1")
    assert check_cube(ds) == []


def test_missing_variable_wrong_units_and_irregular_grid_all_listed():
    ds = _cube().drop_vars("lai")
    ds["soc10"].attrs["units"] = "kg m-2"
    ds = ds.assign_coords(lat=[10.0, 9.5, 9.0, 7.0])
    problems = check_cube(ds, "c.zarr")
    assert "c.zarr: missing variable lai" in problems
    assert any("'lat' is not a regular grid" in p for p in problems)
    assert any("variable 'soc10' has units 'kg m-2'; accepted: 'g kg-1'" in p for p in problems)
    assert len(problems) == 3
    with pytest.raises(InputError) as info:
        require_contract(ds, "c.zarr")
    assert str(info.value) == "c.zarr: 3 problems with the input contract: " + " | ".join(problems)
    assert len(str(info.value).splitlines()) == 1  # the CLI's one error line


def test_missing_units_and_alternatives_named():
    ds = _cube().drop_vars(["red", "swir1"])
    del ds["lst_day"].attrs["units"]
    problems = check_cube(ds)
    assert "cube: missing variable nirv or (nir, red)" in problems
    assert "cube: missing variable lswi or (nir, swir1)" in problems
    assert any("'lst_day' has no 'units' attribute; expected 'K'" in p for p in problems)


def test_celsius_lst_is_accepted_and_converted():
    ds = _cube()
    ds["lst_day"] = (ds.lst_day - 273.15).assign_attrs(units="degC")
    assert check_cube(ds) == []
    converted = canonical_units(ds.lst_day, "lst_day")
    assert converted.attrs["units"] == "K"
    np.testing.assert_allclose(converted.values, ds.lst_day.values + 273.15, rtol=1e-6)


def test_kelvin_label_on_celsius_values_is_caught_by_range():
    ds = _cube()
    ds["lst_night"] = (ds.lst_night - 273.15).assign_attrs(units="K")
    problems = check_cube(ds)
    assert len(problems) == 1 and "'lst_night'" in problems[0] and "plausible range" in problems[0]


def test_soilgrids_decigrams_converted():
    ds = _cube()
    ds["soc0"] = (ds.soc0 * 10).assign_attrs(units="dg kg-1")
    assert check_cube(ds) == []
    np.testing.assert_allclose(canonical_units(ds.soc0, "soc0").values, ds.soc0.values / 10, rtol=1e-6)


def test_longitudes_0_360_rejected():
    ds = _cube().assign_coords(lon=np.array([178.25, 178.75, 179.25, 179.75, 180.25]))
    assert any("'lon' values span" in p and "[-180, 180)" in p for p in check_cube(ds))


def test_static_variable_with_time_rejected():
    ds = _cube()
    ds["soc0"] = ds.lst_day.copy().assign_attrs(units="g kg-1") * 0 + 10
    ds["soc0"].attrs["units"] = "g kg-1"
    assert any("'soc0' should be static" in p for p in check_cube(ds))


def test_open_cube_round_trip_and_errors(tmp_path):
    ds = _cube()
    write_zarr(ds, tmp_path / "c.zarr")
    ds.to_netcdf(tmp_path / "c.nc", engine="h5netcdf")
    for path in (tmp_path / "c.zarr", tmp_path / "c.nc"):
        back = open_cube(path)
        assert check_cube(back) == []
        np.testing.assert_array_equal(back.lai.values, ds.lai.values)
    with pytest.raises(InputError, match="absent.zarr: cube not found"):
        open_cube(tmp_path / "absent.zarr")
    (tmp_path / "c.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="unknown cube format"):
        open_cube(tmp_path / "c.csv")
    (tmp_path / "broken.nc").write_text("not netcdf")
    with pytest.raises(InputError, match="broken.nc: cannot open as a cube"):
        open_cube(tmp_path / "broken.nc")


def test_write_zarr_appends_keep_the_attributes_and_arrays_use_lz4(tmp_path):
    import zarr

    ds = _cube()
    ds.attrs = {"features": "[1, 2]", "title": "t"}
    half = ds.lat.size // 2
    write_zarr(ds.isel(lat=slice(0, half)), tmp_path / "c.zarr", mode="w")
    write_zarr(ds.isel(lat=slice(half, None)).drop_attrs(deep=False), tmp_path / "c.zarr", append_dim="lat")
    back = open_cube(tmp_path / "c.zarr")
    assert back.attrs == ds.attrs
    np.testing.assert_array_equal(back.lai.values, ds.lai.values)
    codecs = zarr.open_array(str(tmp_path / "c.zarr" / "lai")).metadata.codecs
    assert any(getattr(c, "cname", None) is not None and c.cname.value == "lz4" for c in codecs), codecs
