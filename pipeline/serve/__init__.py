"""dupq-serve: the models over HTTP (an API and a page), see `pipeline.serve.app`."""
