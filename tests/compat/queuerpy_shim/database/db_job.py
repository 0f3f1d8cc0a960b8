"""queuerPy's internal job handler: present so its test module imports; tests that use it test
queuerPy's internals and fail here by design."""


class JobDBHandler:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("queuerPy internal (JobDBHandler): not part of the public API")
