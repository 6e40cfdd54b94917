"""`python -m core serve`: the registry's versions over HTTP.

- `app`: the FastAPI app factory (`create_app`), its routes and lifespan;
- `cache`: fitted pipelines keyed by artifact sha256, loaded with `core.predict.load_model`;
- `follower`: which version each alias names, polled cheaply, swapped as one pointer;
- `scoring`: request bodies to records, results with decision, version and warnings;
- `recorder`: Prometheus metrics and per-minute aggregates written to the registry;
- `live`: what the dashboard and model card say about serving (no web stack imported);
- `run`: the uvicorn entry point with the bearer-token rule.

Nothing here is imported by `python -m core --help`.
"""
