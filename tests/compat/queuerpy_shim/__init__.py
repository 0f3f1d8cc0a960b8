"""queuerPy's module paths mapped onto queuer, for running queuerPy's public-API tests."""
