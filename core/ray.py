"""Scale-out on Ray (extra ``ray``): a Ray Serve deployment of the ``rerankit serve`` app, and
batch reranking of large query sets with Ray Data and an actor pool (one model load per actor).

>>> from rerankit.ray import deployment, rerank_dataset                    # doctest: +SKIP
>>> serve.run(deployment({"bge": RerankerConfig(model="BAAI/bge-reranker-base")},
...                      num_replicas=2))                                   # doctest: +SKIP
>>> serve.run(deployment("models.yaml"))  # as rerankit serve --config   # doctest: +SKIP
>>> rerank_dataset(ray.data.from_items(rows), config, concurrency=2)       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rerankit.config import ConfigSource, RerankerConfig, load_configs
from rerankit.errors import MissingDependencyError
from rerankit.reranker import Reranker, best_first

if TYPE_CHECKING:
    from rerankit.serve.app import ServeSettings

try:
    import ray
    import ray.data
    from ray import serve
except ImportError as exc:
    raise MissingDependencyError("ray", "ray", "rerankit.ray") from exc


def deployment(
    configs: Mapping[str, RerankerConfig] | ConfigSource,
    settings: ServeSettings | None = None,
    **deployment_options: Any,
) -> Any:
    """A Ray Serve application serving ``configs`` by name with the same HTTP app as
    ``rerankit serve``. ``configs`` maps names to :class:`RerankerConfig`, or is anything
    :func:`rerankit.config.load_configs` reads (a YAML/JSON path, ``{models: {...}}``, a list).
    ``deployment_options`` (``num_replicas``, ``autoscaling_config``, ``ray_actor_options``, ...)
    pass through to ``serve.deployment``. Each replica loads the models once and batches its own
    concurrent requests."""
    from rerankit.serve.app import ServeSettings

    named = (
        dict(configs)
        if isinstance(configs, Mapping)
        and configs
        and all(isinstance(c, RerankerConfig) for c in configs.values())
        else load_configs(configs)
    )
    config_dicts = {name: config.to_dict() for name, config in named.items()}
    settings_dict = asdict(settings if settings is not None else ServeSettings())

    def build_app() -> Any:
        from rerankit.serve.app import ServeSettings, create_app

        rerankers = {n: Reranker.from_config(c) for n, c in config_dicts.items()}
        return create_app(rerankers, ServeSettings(**settings_dict))

    options = {"name": "rerankit", **deployment_options}
    return serve.deployment(**options)(serve.ingress(build_app)()).bind()


class _RerankActor:
    """One model per actor; ranks every row of a batch in one call, keeping rows and order."""

    def __init__(self, config: dict[str, Any], query_column: str, candidates_column: str) -> None:
        self.reranker = Reranker.from_config(config)
        self.query_column = query_column
        self.candidates_column = candidates_column

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        requests = [
            (str(query), [str(c) for c in candidates])
            for query, candidates in zip(
                batch[self.query_column], batch[self.candidates_column], strict=True
            )
        ]
        scores = self.reranker.score_many(requests)  # the batch's rows share model batches
        rankings = [best_first(values) for values in scores]
        return {**batch, "scores": scores, "ranking": rankings}


def rerank_dataset(
    dataset: ray.data.Dataset,
    config: RerankerConfig,
    *,
    query_column: str = "query",
    candidates_column: str = "candidates",
    concurrency: int = 1,
    batch_size: int = 16,
    num_cpus: float = 1,
) -> ray.data.Dataset:
    """Add ``scores`` (input order) and ``ranking`` (indices, best first) to every row.

    Rows hold a query and its candidate texts. ``concurrency`` actors each load the model once.
    Every row comes back, in order: this sets ``preserve_order`` on the current DataContext.
    """
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    return dataset.map_batches(
        _RerankActor,
        fn_constructor_args=(config.to_dict(), query_column, candidates_column),
        batch_size=batch_size,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=num_cpus,
    )
