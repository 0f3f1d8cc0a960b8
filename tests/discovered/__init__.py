"""A package whose modules register tasks when imported (test_workflows: task discovery)."""
