"""Entry points: the FastAPI app, its routers and schemas, error mapping, the CLI."""
