"""``rerankit serve``: a Jina/Cohere-compatible rerank server for one machine (uvicorn).

Image documents (``{"image": <base64, data URI or URL>, "text"?: ...}``) reach models that take
images (``backend=vlm``, or ``backend=jina`` in front of a service that does); an image URL is
downloaded only by a model built with ``--option fetch_images=true``. ``--max-body-bytes``
bounds a request, ``--max-image-bytes`` each image in it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerankit._optional import require
from rerankit.cli.spec import joined, with_flags
from rerankit.config import RerankerConfig, load_configs
from rerankit.errors import ConfigurationError

if TYPE_CHECKING:  # fastapi is the serve extra's: imported when a server starts
    from rerankit.serve.app import ServeSettings


def register(commands: Any) -> None:
    """Add the ``serve`` sub-command."""
    parser = commands.add_parser(
        "serve",
        help="serve rerankers over HTTP (Jina / Cohere shape)",
        epilog="Backend options and their types: rerankit info.",
    )
    parser.add_argument("--model", help="model to serve (its name in requests is this string)")
    parser.add_argument("--backend", help="backend for --model (inferred when omitted)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a RerankerConfig field or backend option for --model, as text (batch_size=64, "
        "trust_remote_code=false, providers='[\"CPUExecutionProvider\"]'); "
        "`rerankit info` lists every backend's options",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML/JSON file: {models: {name: config}}, {rerankers: [config, ...]} or a list",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--no-batching", action="store_true", help="score requests one by one")
    parser.add_argument("--max-batch-pairs", type=int, default=256)
    parser.add_argument(
        "--max-wait-ms", type=float, default=0.0, help="extra wait for company (default: none)"
    )
    parser.add_argument("--max-queue-pairs", type=int, default=8192)
    parser.add_argument("--max-documents", type=int, default=1000)
    parser.add_argument("--max-body-bytes", type=int, default=10 * 1024 * 1024)
    parser.add_argument(
        "--max-image-bytes",
        type=int,
        default=10 * 1024 * 1024,
        help="bytes per image document, decoded (default 10 MiB; the body limit also applies)",
    )
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--api-key-env", help="require 'Authorization: Bearer $VAR' on /v1")
    parser.add_argument("--ray", action="store_true", help="serve with Ray Serve (extra 'ray')")
    parser.add_argument("--ray-address", help="Ray cluster to join (default: start a local one)")
    parser.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas")
    parser.add_argument(
        "--autoscaling",
        type=json.loads,
        help='Ray Serve autoscaling_config as JSON, e.g. {"min_replicas": 1, "max_replicas": 4}',
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Load the models, then serve until interrupted (in-flight requests are drained)."""
    from rerankit.reranker import Reranker
    from rerankit.serve.app import create_app

    settings = serve_settings(args)  # checked before any model loads
    configs = model_configs(args)
    if args.ray:
        deploy_on_ray(args, configs, settings, blocking=True)
        return 0
    uvicorn = require("uvicorn", extra="serve", purpose="rerankit serve")
    rerankers = {name: Reranker.from_config(config) for name, config in configs.items()}
    app = create_app(rerankers, settings)
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=30)
    return 0


def serve_settings(args: argparse.Namespace) -> ServeSettings:
    """The server's :class:`~rerankit.serve.app.ServeSettings` from the command line."""
    from rerankit.serve.app import ServeSettings

    return ServeSettings(
        batching=not args.no_batching,
        max_batch_pairs=args.max_batch_pairs,
        max_wait_ms=args.max_wait_ms,
        max_queue_pairs=args.max_queue_pairs,
        max_documents=args.max_documents,
        max_body_bytes=args.max_body_bytes,
        max_image_bytes=getattr(args, "max_image_bytes", 10 * 1024 * 1024),
        request_timeout_s=args.request_timeout,
        api_key_env=args.api_key_env,
    )


def deploy_on_ray(
    args: argparse.Namespace,
    configs: dict[str, RerankerConfig],
    settings: ServeSettings,
    *,
    blocking: bool,
) -> None:
    """Run the app on Ray Serve (joining ``--ray-address`` or the Ray already started here)."""
    ray = require("ray", extra="ray", purpose="rerankit serve --ray")
    from ray import serve

    from rerankit.ray import deployment

    if not ray.is_initialized():
        ray.init(address=args.ray_address)
    serve.start(http_options={"host": args.host, "port": args.port})
    options: dict[str, Any] = {}
    if args.autoscaling is not None:
        options["autoscaling_config"] = args.autoscaling
    else:
        options["num_replicas"] = args.replicas
    app = deployment(configs, settings, **options)
    serve.run(app, route_prefix="/", blocking=blocking)


def model_configs(args: argparse.Namespace) -> dict[str, RerankerConfig]:
    """Served name -> config, from --config and/or --model (served under its own string)."""
    files = {} if args.config is None else load_configs(args.config, extra="serve")
    flags: dict[str, RerankerConfig] = {}
    if args.model is not None:
        settings = with_flags(
            args.option, model=args.model, backend=args.backend, device=args.device
        )
        if "name" in settings:
            raise ConfigurationError("--option name= is not allowed: --model is the served name")
        flags = load_configs({**settings, "name": args.model}, label="--model")
    elif args.option:
        raise ConfigurationError("--option sets --model's options; a --config file holds its own")
    configs = joined(files, flags)
    if not configs:
        raise ConfigurationError("pass --model or --config")
    return configs
