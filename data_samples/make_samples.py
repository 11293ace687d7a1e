"""Write the three sample datasets in this folder: credit.csv, sensors.parquet, clinic.csv.

Seeded and deterministic (NumPy ``default_rng``, Polars; no pandas, no downloads):
running it twice writes the same data. The datasets are small but flawed on purpose
(missing values, outliers, typos, class imbalance) so that every prepflow step kind
has something to do. See README.md in this folder.

    python data_samples/make_samples.py [--out DIR]
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent


def _calibrate_intercept(logit: np.ndarray, rate: float) -> float:
    """The intercept b such that mean(sigmoid(logit + b)) == rate (bisection)."""
    lo, hi = -20.0, 20.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(logit + mid)))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _pick(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``k`` distinct row indices out of ``n``, sorted."""
    return np.sort(rng.choice(n, size=k, replace=False))


# --------------------------------------------------------------------------- credit


def make_credit(n: int = 4000, seed: int = 20240501) -> pl.DataFrame:
    """Consumer credit applications; label ``default`` (~7 % positive)."""
    rng = np.random.default_rng(seed)

    age = np.clip(np.round(rng.normal(43, 13, n)), 18, 88)

    # employment depends on age: mostly retired past 63
    emp_levels = np.array(["employed", "self_employed", "unemployed", "retired"])
    p_young = np.array([0.72, 0.15, 0.11, 0.02])
    p_old = np.array([0.17, 0.10, 0.03, 0.70])
    old = age >= 63
    u = rng.random(n)
    cum_young, cum_old = np.cumsum(p_young), np.cumsum(p_old)
    emp_idx = np.where(old, np.searchsorted(cum_old, u), np.searchsorted(cum_young, u))
    employment = emp_levels[emp_idx]

    regions = np.array(["north", "south", "east", "west", "central"])
    region = regions[rng.choice(5, size=n, p=[0.25, 0.22, 0.20, 0.23, 0.10])]

    # log-normal income: age curve, employment effect, wider spread for self-employed
    emp_shift = np.select(
        [employment == "employed", employment == "self_employed", employment == "unemployed"], [0.0, 0.08, -1.1], -0.45
    )
    emp_sd = np.where(employment == "self_employed", 0.85, 0.5)
    log_income = 10.7 + 0.015 * (age - 40) - 0.0004 * (age - 40) ** 2 + emp_shift + rng.normal(0, 1, n) * emp_sd
    income = np.round(np.exp(log_income), -1)

    # debt ratio: monthly debt payments / monthly income; higher for lower incomes
    debt_ratio = rng.beta(2.0, 4.5, n) * np.exp(-0.35 * (log_income - 10.7)) * 0.9
    n_accounts = rng.poisson(np.where(age < 30, 2.0, 4.0) + 0.3 * (employment == "employed"), n)

    # the label, from the clean values: ~7 % defaults
    logit = (
        3.0 * (np.minimum(debt_ratio, 1.5) - 0.3)
        - 0.8 * (log_income - 10.7)
        + 0.9 * (employment == "unemployed")
        + 0.35 * (employment == "self_employed")
        - 0.025 * (age - 43)
        + 0.12 * (n_accounts - 3)
        + 0.3 * (region == "south")
    )
    p_default = 1.0 / (1.0 + np.exp(-(logit + _calibrate_intercept(logit, 0.07))))
    default = (rng.random(n) < p_default).astype(np.int64)

    # --- what is wrong on purpose -------------------------------------------------
    # income: ~8 % missing, more often for the self-employed and for high earners
    z = (log_income - log_income.mean()) / log_income.std()
    base = np.select(
        [employment == "self_employed", employment == "unemployed", employment == "retired"], [0.25, 0.08, 0.05], 0.035
    )
    weight = base * np.exp(0.45 * z)
    p_missing = np.clip(weight * 0.08 / weight.mean(), 0, 0.9)
    income_missing = rng.random(n) < p_missing
    # a few gross outliers: typed with extra zeros, or annual entered in cents
    typo = _pick(rng, n, 8)
    income[typo[:5]] *= 100
    income[typo[5:]] = np.array([9_999_999.0, 12_500_000.0, 25_000_000.0])
    income[income_missing] = np.nan

    # debt_ratio: near-zero incomes make the ratio explode in a handful of rows
    debt_ratio = np.round(debt_ratio, 4)
    blowup = _pick(rng, n, 15)
    debt_ratio[blowup] = np.round(rng.uniform(15, 3500, blowup.size), 1)

    # age: ~3 % missing, a few typos (999 = "unknown" in the source system)
    age_missing = rng.random(n) < 0.03
    age_typo = _pick(rng, n, 6)
    age[age_typo] = np.array([999, 999, 999, 150, 199, 999], dtype=float)
    age[age_missing] = np.nan

    emp_out = employment.astype(object)
    emp_out[rng.random(n) < 0.015] = None

    ids = 100_001 + rng.permutation(n)
    return pl.DataFrame(
        {
            "id": pl.Series(ids, dtype=pl.Int64),
            "age": pl.Series(age, dtype=pl.Float64).fill_nan(None),
            "income": pl.Series(income, dtype=pl.Float64).fill_nan(None),
            "debt_ratio": pl.Series(debt_ratio, dtype=pl.Float64),
            "n_accounts": pl.Series(n_accounts, dtype=pl.Int64),
            "employment": pl.Series(emp_out.tolist(), dtype=pl.String),
            "region": pl.Series(region, dtype=pl.String),
            "default": pl.Series(default, dtype=pl.Int64),
        }
    ).sort("id")


# -------------------------------------------------------------------------- sensors


def make_sensors(n_machines: int = 20, seed: int = 20240502) -> pl.DataFrame:
    """Industrial sensor readings every 10 minutes; label ``failure`` (~3 % positive)."""
    rng = np.random.default_rng(seed)
    horizon = 12  # failure == 1 for the 12 readings (2 h) before a breakdown
    n_events = 10
    start = datetime(2024, 5, 1)

    lengths = rng.integers(160, 241, n_machines)
    # failure events: 10 breakdowns spread over machines, never in the first 40 readings
    event_machines = np.sort(rng.choice(n_machines, size=n_events, replace=True))

    frames = []
    for m in range(n_machines):
        length = int(lengths[m])
        t0 = start + timedelta(minutes=int(rng.integers(0, 60)))
        jitter = rng.integers(-20, 21, length)
        ts = [t0 + timedelta(minutes=10 * i, seconds=int(j)) for i, j in enumerate(jitter)]

        big = rng.random() < 0.4  # two machine models: 1500 rpm and 3000 rpm
        base_t, base_v, base_p = rng.uniform(58, 72), rng.uniform(1.8, 3.5), rng.uniform(5.0, 7.0)
        base_rpm = rng.uniform(2950, 3000) if big else rng.uniform(1470, 1500)

        def ar1(sd: float, phi: float = 0.85, length: int = length) -> np.ndarray:
            e = rng.normal(0, sd, length)
            out = np.empty(length)
            out[0] = e[0]
            for i in range(1, length):
                out[i] = phi * out[i - 1] + e[i]
            return out

        temp = base_t + ar1(0.8)
        vib = base_v * np.exp(ar1(0.05))
        pres = base_p + ar1(0.08)
        rpm = base_rpm + ar1(4.0)
        failure = np.zeros(length, dtype=np.int64)
        maint = np.zeros(length, dtype=bool)

        n_ev = int((event_machines == m).sum())
        if n_ev:
            # non-overlapping breakdowns, each followed by 3-6 readings of maintenance
            slots = np.sort(rng.choice(np.arange(40, length - 10, 30), size=n_ev, replace=False))
            for e in slots:
                ramp = np.arange(-horizon - 6, 0)
                idx = e + ramp
                w = ((ramp + horizon + 6) / (horizon + 6)) ** 2  # degradation grows towards the event
                temp[idx] += 14 * w
                vib[idx] *= 1 + 1.8 * w
                pres[idx] -= 0.6 * w
                failure[e - horizon : e] = 1
                stop = rng.integers(3, 7)
                maint[e : e + stop] = True
                rpm[e : e + stop] = rng.uniform(0, 15, stop)
                temp[e : e + stop] = base_t - 15 + rng.normal(0, 1, stop)
                vib[e : e + stop] = rng.uniform(0.05, 0.2, stop)

        status = np.full(length, "ok", dtype=object)
        status[(vib > 1.5 * base_v) | (temp > base_t + 7)] = "warning"
        status[(vib > 2.2 * base_v) | (temp > base_t + 12)] = "alarm"
        status[maint] = "maintenance"

        frames.append(
            {
                "machine_id": np.full(length, f"M{m + 1:02d}", dtype=object),
                "timestamp": np.array(ts, dtype="datetime64[us]"),
                "temperature": np.round(temp, 2),
                "vibration": np.round(vib, 3),
                "pressure": np.round(pres, 3),
                "rpm": np.round(rpm, 1),
                "status": status,
                "failure": failure,
            }
        )

    # --- what is wrong on purpose, per machine ---------------------------------------
    sensor_cols = ["temperature", "vibration", "pressure", "rpm"]
    null_cells: dict[str, list[np.ndarray]] = {c: [] for c in sensor_cols}
    for m, f in enumerate(frames):
        length = f["failure"].size
        missing = {c: np.zeros(length, dtype=bool) for c in sensor_cols}
        as_nan = {c: np.zeros(length, dtype=bool) for c in sensor_cols}
        # gateway outages: every sensor goes quiet for 2-10 readings
        for _ in range(rng.integers(1, 4)):
            s, k = int(rng.integers(0, length - 10)), int(rng.integers(2, 11))
            for c in sensor_cols:
                missing[c][s : s + k] = True
        # one sensor drops out for 1-6 readings; some report NaN instead of nothing
        for c in sensor_cols:
            for _ in range(rng.integers(1, 4)):
                s, k = int(rng.integers(0, length - 6)), int(rng.integers(1, 7))
                missing[c][s : s + k] = True
                if rng.random() < 0.3:
                    as_nan[c][s : s + k] = True
        # a few machines start with a gap: forward fill alone cannot fill those
        if m in (2, 11, 17):
            for c in sensor_cols:
                missing[c][: 2 + m % 3] = True
        # spikes: electrical glitches, ~0.5 % of readings per sensor
        for c, how in zip(sensor_cols, ["x3", "x6", "neg", "x2"], strict=True):
            k = max(1, round(0.005 * length))
            idx = rng.choice(length, size=k, replace=False)
            vals = f[c].astype(float)
            if how == "neg":
                vals[idx] = -vals[idx] * rng.uniform(2, 4, k)
            else:
                vals[idx] = vals[idx] * float(how[1:]) * rng.uniform(0.9, 1.2, k)
            f[c] = np.round(vals, 3)
        for c in sensor_cols:
            f[c] = f[c].astype(float)
            f[c][missing[c] & as_nan[c]] = np.nan
            null_cells[c].append(missing[c] & ~as_nan[c])  # these become null
        # status: the logger sometimes loses it
        f["status"][rng.random(length) < 0.01] = None

    df = pl.concat(
        [
            pl.DataFrame(
                {
                    "machine_id": pl.Series(f["machine_id"].tolist(), dtype=pl.String),
                    "timestamp": pl.Series(f["timestamp"]).cast(pl.Datetime("us")),
                    **{c: pl.Series(f[c], dtype=pl.Float64) for c in sensor_cols},
                    "status": pl.Series(f["status"].tolist(), dtype=pl.String),
                    "failure": pl.Series(f["failure"], dtype=pl.Int64),
                }
            ).with_columns(
                # null (no reading) where not NaN (bad reading)
                pl.when(pl.Series(nulls)).then(None).otherwise(pl.col(c)).alias(c)
                for c, nulls in zip(sensor_cols, [null_cells[c][m] for c in sensor_cols], strict=True)
            )
            for m, f in enumerate(frames)
        ]
    )

    # interleave machines at random while keeping each machine's rows in time order
    owner = df["machine_id"].to_numpy()
    order_within = np.concatenate([np.arange(int(k)) for k in lengths])
    slot_owner = rng.permutation(owner)
    slot_rank = np.zeros(owner.size, dtype=np.int64)
    seen: dict[str, int] = {}
    for i, o in enumerate(slot_owner):
        slot_rank[i] = seen.get(o, 0)
        seen[o] = slot_rank[i] + 1
    key = pl.DataFrame({"machine_id": owner, "rank": order_within, "row": np.arange(owner.size)})
    slots = pl.DataFrame({"machine_id": slot_owner, "rank": slot_rank, "slot": np.arange(owner.size)})
    perm = key.join(slots, on=["machine_id", "rank"]).sort("slot")["row"].to_numpy()
    return df[perm]


# --------------------------------------------------------------------------- clinic

_CLINIC_FEATURES = {
    # scikit-learn name -> (our name, decimals)
    "mean radius": ("mean_radius", 2),
    "mean texture": ("mean_texture", 2),
    "mean area": ("mean_area", 1),
    "mean smoothness": ("mean_smoothness", 5),
    "mean concavity": ("mean_concavity", 5),
    "mean symmetry": ("mean_symmetry", 4),
    "worst perimeter": ("worst_perimeter", 2),
    "worst concave points": ("worst_concave_points", 5),
}


def make_clinic(n: int = 3000, positive_rate: float = 0.10, seed: int = 20240503) -> pl.DataFrame:
    """Breast cancer screening, built from scikit-learn's bundled Wisconsin data.

    The 569 original rows are resampled per class with a small multiplicative jitter
    (a smoothed bootstrap) to ``n`` rows, with malignant cases cut to ``positive_rate``
    (37 % in the original). Label ``malignant`` (1 = malignant).
    """
    from sklearn.datasets import load_breast_cancer  # ships with scikit-learn: no download

    rng = np.random.default_rng(seed)
    data = load_breast_cancer()
    names = list(data.feature_names)
    cols = [names.index(k) for k in _CLINIC_FEATURES]
    x = data.data[:, cols]
    malignant = (data.target == 0).astype(np.int64)  # sklearn: 0 = malignant

    n_pos = round(n * positive_rate)
    pos_pool, neg_pool = np.flatnonzero(malignant == 1), np.flatnonzero(malignant == 0)
    rows = np.concatenate([rng.choice(pos_pool, n_pos), rng.choice(neg_pool, n - n_pos)])
    rows = rows[rng.permutation(n)]
    feats = x[rows] * np.exp(rng.normal(0, 0.03, (n, len(cols))))
    label = malignant[rows]

    # four hospitals; the share of referrals differs, and one site's texture readings run high
    sites = np.array(["north_general", "riverside", "st_mary", "university"])
    site = sites[rng.choice(4, size=n, p=[0.35, 0.25, 0.22, 0.18])]
    tex = list(_CLINIC_FEATURES).index("mean texture")
    feats[site == "riverside", tex] *= 1.08

    for j, (_, dec) in enumerate(_CLINIC_FEATURES.values()):
        feats[:, j] = np.round(feats[:, j], dec)

    # --- what is wrong on purpose -------------------------------------------------
    # gross outliers. Unit mix-ups: 2 % of rows recorded in mm instead of cm, so
    # lengths (radius, perimeter) are x10 and the area x100 on the whole row; plus a few
    # single-cell typos (x10) anywhere.
    names_out = [name for name, _ in _CLINIC_FEATURES.values()]
    lengths_ = [names_out.index(c) for c in ("mean_radius", "worst_perimeter")]
    unit_rows = _pick(rng, n, round(0.02 * n))
    for j in lengths_:
        feats[unit_rows, j] *= 10
    feats[unit_rows, names_out.index("mean_area")] *= 100
    typo_rows = _pick(rng, n, 8)
    feats[typo_rows, rng.integers(0, len(cols), typo_rows.size)] *= 10
    for j, (_, dec) in enumerate(_CLINIC_FEATURES.values()):  # x10 must not leave 120.60000000000001
        feats[:, j] = np.round(feats[:, j], dec)
    # MCAR: each feature cell missing with probability 5 %
    feats[rng.random(feats.shape) < 0.05] = np.nan

    patient_id = [f"P{v:06d}" for v in rng.choice(np.arange(10_000, 1_000_000), size=n, replace=False)]
    return pl.DataFrame(
        {
            "patient_id": patient_id,
            "site": pl.Series(site, dtype=pl.String),
            **{
                name: pl.Series(feats[:, j], dtype=pl.Float64).fill_nan(None)
                for j, (name, _) in enumerate(_CLINIC_FEATURES.values())
            },
            "malignant": pl.Series(label, dtype=pl.Int64),
        }
    )


# ----------------------------------------------------------------------------- main


def _summary(name: str, df: pl.DataFrame, target: str) -> str:
    lines = [f"{name}: {df.height} rows x {df.width} columns; {target} positive rate {df[target].mean():.3f}"]
    for c, dtype in df.schema.items():
        miss = df[c].null_count() + (df[c].is_nan().sum() if dtype.is_float() else 0)
        if miss:
            lines.append(f"  {c:<22} missing {miss / df.height:6.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: this folder)")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    credit = make_credit()
    credit.write_csv(out / "credit.csv", null_value="")
    sensors = make_sensors()
    sensors.write_parquet(out / "sensors.parquet", compression="zstd", statistics=True)
    clinic = make_clinic()
    clinic.write_csv(out / "clinic.csv", null_value="")

    print(_summary("credit.csv", credit, "default"))
    print(_summary("sensors.parquet", sensors, "failure"))
    print(_summary("clinic.csv", clinic, "malignant"))


if __name__ == "__main__":
    main()
