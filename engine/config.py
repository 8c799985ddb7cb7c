"""One configuration tree for the whole pipeline: dataclasses, TOML load/save, validation, hash.

Defaults follow the method paper (docs/architecture.md, "Method"). Every value is checked on load; an
unknown key, a wrong type or an out-of-range value raises ConfigError naming the file and key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from ciml_ter.errors import ConfigError
from ciml_ter.grid import BBOX_RULE, bbox_ok
from ciml_ter.kernels.scvtg import DEFAULT_LEVELS, scvtg_names


# XGBoost regression objectives whose margin is the prediction (members merge by leaf values)
IDENTITY_OBJECTIVES = ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror")


@dataclass
class GridConfig:
    """Output grid: resolution (degrees), window (W, S, E, N in degrees), years (first, last)."""

    res: float = 0.5
    bbox: tuple[float, float, float, float] = (-180.0, -90.0, 180.0, 90.0)
    years: tuple[int, int] = (2001, 2003)


@dataclass
class FeaturesConfig:
    """Feature cube: Savitzky-Golay envelope (window in days, polynomial order, iterations),
    SCVTG levels (fractions of the Vbottom..Vtop range) and top/bottom share, and the height
    of the row bands processed at once (0: sized from half the free GPU memory on "cuda", from
    a 1 GiB budget on "cpu")."""

    sg_window: int = 61
    sg_order: int = 3
    sg_max_iter: int = 10
    levels: tuple[float, ...] = DEFAULT_LEVELS
    extreme_share: float = 0.05
    band_rows: int = 0


@dataclass
class CausalConfig:
    """PCMCI+ settings and how causal strengths become XGBoost feature weights (``causal``):
    which weights train the model ("pooled" over all sites, or "per_pft": the PFTs' weights
    averaged by their share of the rows, pooled for a PFT with fewer than ``min_pft_sites``
    sites); |Pearson r| from which a non-parent driver is a parent's collinear sibling, and the
    share of that parent's weight it gets; floor weight and power of the strengths; ``guard``:
    a fold keeps its causal weights only when the site-grouped CV that chooses its rounds scores
    them better than none by at least ``guard_margin`` (a fraction of the MAE without them;
    ``training._choose_rounds``)."""

    pc_alpha: float = 0.05
    tau_max: int = 0
    weights: str = "per_pft"
    min_pft_sites: int = 5
    collinear_r: float = 0.8
    sibling_share: float = 0.56
    weight_floor: float = 0.01
    weight_power: float = 0.54
    guard: bool = True
    guard_margin: float = 0.05


@dataclass
class XGBoostConfig:
    """XGBoost hyper-parameters (the method's; docs/architecture.md, "Method"). ``gamma`` is in units of the variance of
    one row's squared gradient (``training.gain_scale``: var(ter) for squared error, huber_slope² for
    pseudo-Huber, 1 for absolute error), so that it means the same for any TER scale. The
    objective is one with an identity link (the members are merged by their leaf values);
    absolute error fits what the evaluation scores (MAE). ``huber_slope`` is in g C m-2 month-1. ``early_stopping_rounds`` 0: every member is fitted with
    ``num_boost_round`` rounds; above 0: each fold's rounds are chosen by site-grouped
    cross-validation on its training sites (``train.inner_folds``) with that patience, up to
    ``num_boost_round``, then every member of the fold is refitted on all its training sites."""

    tree_method: str = "hist"
    objective: str = "reg:absoluteerror"
    huber_slope: float = 20.0
    learning_rate: float = 0.02
    max_depth: int = 3
    min_child_weight: float = 40.0
    gamma: float = 0.0
    reg_lambda: float = 20.0
    subsample: float = 0.7
    colsample_bylevel: float = 0.6
    colsample_bynode: float = 0.3
    num_boost_round: int = 5000
    early_stopping_rounds: int = 200


@dataclass
class TrainConfig:
    """Ensemble: folds grouped by site x seeds; site-grouped folds inside each fold's training
    sites that choose its number of rounds (``xgboost.early_stopping_rounds``)."""

    folds: int = 10
    seeds: int = 20
    inner_folds: int = 3
    workers: int = 0  # 0 = one per CPU core
    causal: bool = True
    gpu_min_rows: int = 200_000  # device "auto" trains on the GPU from this many site-months
    gpu_workers: int = 4  # members trained at once on one GPU (threads)
    nested_spread: bool = True  # members without two folds: the towers' estimate and spread for the intervals


ALL_DRIVERS = "*"  # [predictors] antecedent = ["*"]: every time-varying driver


@dataclass
class PredictorsConfig:
    """Context predictors that train and predict add to the drivers alike: ``season``, the
    hemisphere-aware month as sin/cos (shifted 6 months south of the equator; replaces the integer
    ``month``); ``igbp``, one column per IGBP class of the training sites (tower metadata, or the
    land-cover layer at the tower pixel for tables built from a cube); ``climatology``, the
    multi-year mean of every time-varying driver at each site or pixel (never of TER);
    ``antecedent``, the drivers (those of them a table has; ``"*"``: every time-varying driver)
    whose previous month and mean of the three previous months are predictors: the memory of soil
    water, of past rain and of the season's warmth (README "Choosing the defaults")."""

    season: bool = True
    igbp: bool = False
    climatology: bool = True
    antecedent: list[str] = field(default_factory=lambda: [ALL_DRIVERS])

    def drivers_only(self) -> None:
        """No context columns: the model takes the table's predictors as they are."""
        self.season = self.igbp = self.climatology = False
        self.antecedent = []


@dataclass
class PredictConfig:
    """Tiled inference: tile edge (pixels), rows per XGBoost batch, whether to write SHAP."""

    tile_size: int = 0  # 0: from the land mask and the workers (at least 4 land tiles each, <= 500)
    batch_rows: int = 0  # 0: 262,144 on the CPU (16,384 with SHAP), sized from free memory on the GPU
    shap: bool = False


@dataclass
class AnalysisConfig:
    """Trend significance level and the latitude (degrees N) above which is 'high latitude'."""

    p_threshold: float = 0.05
    high_latitude: float = 60.0


@dataclass
class UncertaintyConfig:
    """Prediction intervals (``ciml_ter.uncertainty``; ``evaluate`` calibrates, ``predict`` writes
    them): the levels (whole percentages), the calibration sites a PFT needs for its own quantile
    (else the pooled one), s0 of the scale sqrt(tau^2 + kappa^2 (sigma + s0)^2) as a share of the
    median spread sigma of the calibration rows, and whether the scale has the site-bias term tau
    (off: the score is |y - yhat| / (sigma + s0))."""

    levels: list[float] = field(default_factory=lambda: [0.9])
    min_group_sites: int = 5
    offset_share: float = 0.25
    site_bias: bool = True


@dataclass
class GroupsConfig:
    """Predictor groups used for SHAP group contributions."""

    environment: list[str] = field(default_factory=lambda: [
        "lst_day", "lst_night", "lswi", "soc0", "soc10", "soc30"])
    biotic: list[str] = field(default_factory=lambda: ["lai", "nirv", "ci", "pv", "npv", "bs"])
    spatiotemporal: list[str] = field(default_factory=lambda: scvtg_names(DEFAULT_LEVELS))


@dataclass
class IngestConfig:
    """``ciml-ter ingest`` (the window is ``grid.bbox``): input-cube resolution (degrees), months
    kept ("YYYY-MM:YYYY-MM", "" = all), raster layers ("VAR=GLOB", e.g. "soc30=soilgrids/soc_30.tif"),
    land cover ("default" = the MCD12C1 2019 package, a file, or "" for none) and the share of a
    cell's sub-pixels that must be valid for a value."""

    res: float = 0.05
    months: str = ""
    rasters: list[str] = field(default_factory=list)
    landcover: str = "default"
    min_valid_fraction: float = 0.0


@dataclass
class PathsConfig:
    """Inputs and outputs of a run, for ``ciml-ter run`` and batch jobs; "" = not set.

    ``{year}`` in a path is replaced by the year of a job-array task (``--year``).
    """

    granules: list[str] = field(default_factory=list)  # ingest inputs: files or folders
    cube: str = ""
    fluxnet: list[str] = field(default_factory=list)  # folders; "sample": the shipped FLUXNET2015 sample
    points: list[str] = field(default_factory=list)  # "[PRODUCT=]PATH" point extracts (sites --points)
    features: str = ""
    sites: str = ""
    model: str = ""
    run: str = ""
    analysis: str = ""
    report: str = ""


@dataclass
class PipelineConfig:
    """The whole pipeline's settings; ``device`` is "auto", "cpu" or "cuda"."""

    device: str = "auto"
    seed: int = 0
    grid: GridConfig = field(default_factory=GridConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    causal: CausalConfig = field(default_factory=CausalConfig)
    xgboost: XGBoostConfig = field(default_factory=XGBoostConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predictors: PredictorsConfig = field(default_factory=PredictorsConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    uncertainty: UncertaintyConfig = field(default_factory=UncertaintyConfig)
    groups: GroupsConfig = field(default_factory=GroupsConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (tuples as lists), as written to TOML."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def stable_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of the canonical JSON of every setting but the device, the
        paths, the ingest settings and the uncertainty settings (where a run computes, where its
        files are, or how its input cube was assembled does not change what the model and
        predictions compute from them; the intervals a run writes are identified by the model's
        calibration.json, which the run's manifest records)."""
        settings = {k: v for k, v in self.to_dict().items() if k not in ("device", "paths", "ingest", "uncertainty")}
        text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# Value checks: key path -> (predicate, description of the accepted values).
_RULES: dict[str, tuple[typing.Callable, str]] = {
    "device": (lambda v: v in ("auto", "cpu", "cuda"), "one of 'auto', 'cpu', 'cuda'"),
    "grid.res": (lambda v: 0 < v <= 10, "a resolution in degrees in (0, 10]"),
    "grid.bbox": (bbox_ok, BBOX_RULE),
    "grid.years": (lambda v: 1980 <= v[0] <= v[1] <= 2100, "first, last years with first <= last"),
    "features.levels": (lambda v: len(v) > 0 and all(0 < x < 1 for x in v), "fractions in (0, 1)"),
    "features.extreme_share": (lambda v: 0 < v < 0.5, "a fraction in (0, 0.5)"),
    "features.sg_window": (lambda v: v >= 3 and v % 2 == 1, "an odd number of days >= 3"),
    "features.sg_order": (lambda v: 0 <= v <= 6, "a polynomial order in 0..6"),
    "features.sg_max_iter": (lambda v: v >= 0, "an integer >= 0"),
    "features.band_rows": (lambda v: v >= 0, "an integer >= 0 (0 = automatic)"),
    "causal.pc_alpha": (lambda v: 0 < v < 1, "a significance level in (0, 1)"),
    "causal.tau_max": (lambda v: v >= 0, "an integer lag >= 0"),
    "causal.weight_floor": (lambda v: 0 <= v < 1, "a weight in [0, 1)"),
    "causal.weights": (lambda v: v in ("pooled", "per_pft"), "'pooled' or 'per_pft'"),
    "causal.min_pft_sites": (lambda v: v >= 2, "an integer >= 2"),
    "causal.collinear_r": (lambda v: 0 < v <= 1, "a correlation in (0, 1]"),
    "causal.sibling_share": (lambda v: 0 <= v <= 1, "a share in [0, 1]"),
    "causal.weight_power": (lambda v: 0 <= v <= 4, "a power in [0, 4]"),
    "causal.guard_margin": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    "xgboost.tree_method": (lambda v: v in ("hist", "approx", "exact"), "'hist', 'approx' or 'exact'"),
    "xgboost.objective": (lambda v: v in IDENTITY_OBJECTIVES, "one of " + ", ".join(map(repr, IDENTITY_OBJECTIVES))),
    "xgboost.huber_slope": (lambda v: v > 0, "a slope > 0 (g C m-2 month-1)"),
    "xgboost.learning_rate": (lambda v: 0 < v <= 1, "a rate in (0, 1]"),
    "xgboost.max_depth": (lambda v: v >= 1, "an integer >= 1"),
    "xgboost.min_child_weight": (lambda v: v >= 0, "a number >= 0"),
    "xgboost.gamma": (lambda v: v >= 0, "a number >= 0 (units of the target variance)"),
    "xgboost.reg_lambda": (lambda v: v >= 0, "a number >= 0"),
    "xgboost.subsample": (lambda v: 0 < v <= 1, "a fraction in (0, 1]"),
    "xgboost.colsample_bylevel": (lambda v: 0 < v <= 1, "a fraction in (0, 1]"),
    "xgboost.colsample_bynode": (lambda v: 0 < v <= 1, "a fraction in (0, 1]"),
    "xgboost.num_boost_round": (lambda v: v >= 1, "an integer >= 1"),
    "xgboost.early_stopping_rounds": (lambda v: v >= 0, "an integer >= 0 (0 = fixed rounds)"),
    "train.folds": (lambda v: v >= 2, "an integer >= 2"),
    "train.seeds": (lambda v: v >= 1, "an integer >= 1"),
    "train.inner_folds": (lambda v: v >= 2, "an integer >= 2"),
    "train.workers": (lambda v: v >= 0, "an integer >= 0 (0 = one per core)"),
    "train.gpu_min_rows": (lambda v: v >= 0, "an integer >= 0"),
    "train.gpu_workers": (lambda v: v >= 1, "an integer >= 1"),
    "predictors.antecedent": (lambda v: len(set(v)) == len(v) and (v == [ALL_DRIVERS] or all(
                              re.fullmatch(r"[A-Za-z0-9_]+", d) for d in v)),
                              "distinct driver names (letters, digits, '_'), or [\"*\"] for every driver"),
    "predict.tile_size": (lambda v: v >= 0, "an integer >= 0 (0 = automatic)"),
    "predict.batch_rows": (lambda v: v >= 0, "an integer >= 0 (0 = automatic)"),
    "analysis.p_threshold": (lambda v: 0 < v < 1, "a p-value in (0, 1)"),
    "analysis.high_latitude": (lambda v: 0 <= v < 90, "a latitude in [0, 90)"),
    "uncertainty.levels": (lambda v: len(v) > 0 and len({round(100 * x) for x in v}) == len(v)
                           and all(0 < x < 1 and abs(100 * x - round(100 * x)) < 1e-9 for x in v),
                           "distinct levels in (0, 1), each a whole percentage (e.g. 0.5, 0.9, 0.95)"),
    "uncertainty.min_group_sites": (lambda v: v >= 2, "an integer >= 2"),
    "uncertainty.offset_share": (lambda v: 0 < v <= 10, "a share of the median spread in (0, 10]"),
    "ingest.res": (lambda v: 0 < v <= 10, "a resolution in degrees in (0, 10]"),
    "ingest.months": (lambda v: v == "" or re.fullmatch(r"\d{4}-\d{2}:\d{4}-\d{2}", v) is not None,
                      "'' (all) or 'YYYY-MM:YYYY-MM'"),
    "ingest.rasters": (lambda v: all(re.fullmatch(r"[a-z0-9_]+(\[[^\]=]+\])?=.+", r) for r in v),
                       "'VAR=GLOB' or 'VAR[UNITS]=GLOB' entries"),
    "ingest.min_valid_fraction": (lambda v: 0 <= v <= 1, "a fraction in [0, 1]"),
}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value, tp, key: str, source: str):
    """Check ``value`` against the annotation ``tp``; return it converted (lists -> tuples)."""
    origin = typing.get_origin(tp)
    wrong = ConfigError(f"{source}: key '{key}': expected {_type_name(tp)}, "
                        f"found {type(value).__name__} {value!r}")
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise wrong
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise wrong
        args = typing.get_args(tp)
        if origin is tuple and args[-1] is not Ellipsis and len(value) != len(args):
            raise ConfigError(f"{source}: key '{key}': expected {len(args)} values, found {len(value)}")
        item_types = [args[0]] * len(value) if (origin is list or args[-1] is Ellipsis) else args
        items = [_convert(v, t, f"{key}[{i}]", source) for i, (v, t) in enumerate(zip(value, item_types))]
        return tuple(items) if origin is tuple else items
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")  # a bug in this module


def _build(cls, data: dict, prefix: str, source: str, problems: list[str]):
    """``cls`` from ``data`` with defaults for missing keys; each problem found (unknown key,
    wrong type, value out of range) is appended to ``problems`` and the key left at its
    default, so that all of them can be reported at once."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in sorted(set(data) - set(names)):
        where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
        problems.append(f"unknown key '{prefix}{key}'; keys allowed in {where}: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        key, tp, value = f"{prefix}{name}", hints[name], data[name]
        if dataclasses.is_dataclass(tp):
            if isinstance(value, dict):
                kwargs[name] = _build(tp, value, f"{key}.", source, problems)
            else:
                problems.append(f"key '{key}': expected a table [{key}], found {type(value).__name__}")
            continue
        try:
            value = _convert(value, tp, key, source)
        except ConfigError as exc:
            problems.append(str(exc).removeprefix(f"{source}: "))
            continue
        rule = _RULES.get(key)
        if rule and not rule[0](value):
            problems.append(f"key '{key}': expected {rule[1]}, found {value!r}")
            continue
        kwargs[name] = value
    return cls(**kwargs)


def config_path(config: PipelineConfig, name: str, given=None, year: int | None = None,
                option: str | None = None) -> Path:
    """The path for ``name`` (a [paths] key): ``given`` (the command-line ``option``'s value) if
    set, else the config's, with ``{year}`` filled in; ConfigError when neither is set."""
    value = given if given is not None else getattr(config.paths, name)
    if value in (None, ""):
        where = f"give {option} or set" if option else "set"
        raise ConfigError(f"no {name} path: {where} [paths] {name} in the config")
    text = str(value)
    if "{year}" in text:
        if year is None:
            raise ConfigError(f"[paths] {name} = {text!r} has a {{year}} placeholder: give --year")
        text = text.replace("{year}", str(year))
    return Path(text)


def config_from_dict(data: dict, source: str = "<config>") -> PipelineConfig:
    """Build and validate a PipelineConfig from nested dicts (missing keys take defaults);
    ConfigError listing every problem at once."""
    problems: list[str] = []
    config = _build(PipelineConfig, data, "", source, problems)
    if len(problems) == 1:
        raise ConfigError(f"{source}: {problems[0]}")
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problems: " + "; ".join(problems))
    return config


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: expected a TOML config file, found a directory") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    return config_from_dict(data, str(path))


def save_config(config: PipelineConfig, path: str | Path) -> Path:
    """Write ``config`` as TOML (every key, defaults included)."""
    path = Path(path)
    path.write_text(tomli_w.dumps(config.to_dict()), encoding="utf-8")
    return path


