"""A scikit-learn adapter: any prepflow step as a scikit-learn transformer.

:class:`SklearnStep` works inside ``sklearn.pipeline.Pipeline``, ``ColumnTransformer``
and ``GridSearchCV`` (step parameters are exposed as ``step__<name>``), has
``get_feature_names_out``, and honours ``set_output(transform="polars")``.

Inputs may be a Polars DataFrame or a NumPy array (columns named ``x0, x1, ...``
like scikit-learn does). Steps that change the number of rows do not fit
scikit-learn's transformer contract: outlier ``drop`` is refused, and
augmentation steps are the identity here (use them in a prepflow pipeline).

>>> import numpy as np
>>> from transforms import StandardScaler
>>> SklearnStep(StandardScaler()).fit_transform(np.array([[1.0], [3.0]])).ravel().tolist()
[-1.0, 1.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from transforms.base import Fitted, Step


def _to_polars(X: Any, names: list[str] | None = None) -> pl.DataFrame:
    if isinstance(X, pl.DataFrame):
        return X
    if isinstance(X, pl.LazyFrame):
        return X.collect()
    if hasattr(X, "columns") and hasattr(X, "dtypes") and not isinstance(X, np.ndarray):
        return pl.from_dataframe(X)  # any dataframe-interchange object (e.g. pandas), no pandas import here
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-d array, got shape {arr.shape}")
    cols = names if names is not None and len(names) == arr.shape[1] else [f"x{i}" for i in range(arr.shape[1])]
    return pl.DataFrame({c: arr[:, i] for i, c in enumerate(cols)})


class SklearnStep(TransformerMixin, BaseEstimator):
    """Wrap a prepflow :class:`~transforms.base.Step` as a scikit-learn transformer.

    Parameters
    ----------
    step : Step
        The prepflow step (parameters only; fitted in :meth:`fit`).
    target : str, optional
        Label column name, excluded from the step's default columns.
    """

    def __init__(self, step: Step, target: str | None = None) -> None:
        self.step = step
        self.target = target

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params = {"step": self.step, "target": self.target}
        if deep:
            params.update({f"step__{k}": v for k, v in self.step.model_dump(exclude={"columns"}).items()})
        return params

    def set_params(self, **params: Any) -> SklearnStep:
        nested = {k.removeprefix("step__"): params.pop(k) for k in list(params) if k.startswith("step__")}
        super().set_params(**params)
        if nested:
            self.step = type(self.step).model_validate({**dict(self.step), **nested})
        return self

    def fit(self, X: Any, y: Any = None) -> SklearnStep:
        df = _to_polars(X)
        self.feature_names_in_ = np.asarray(df.columns, dtype=object)
        self.n_features_in_ = df.width
        fitted: Fitted = self.step.fit(df, target=self.target)
        if fitted.keep() is not None:
            raise ValueError(
                f"{self.step.label}: action 'drop' removes rows, which a scikit-learn transformer cannot do; "
                "use action 'null' or 'clip', or run it in a prepflow pipeline"
            )
        self.fitted_ = fitted
        self._out_columns = self.fitted_.apply(df.lazy().head(0)).collect_schema().names()
        return self

    def transform(self, X: Any) -> Any:
        check_is_fitted(self, "fitted_")
        df = _to_polars(X, list(self.feature_names_in_))
        out = self.fitted_.transform(df, train=False)
        if getattr(self, "_sklearn_output_config", {}).get("transform") == "polars":
            return out
        return out.to_numpy()

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "fitted_")
        return np.asarray(self._out_columns, dtype=object)
