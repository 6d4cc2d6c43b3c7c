"""The Celery application of the worker and Flower roles, on the Redis broker."""

import os

from celery import Celery

app = Celery(
    "inner_architect",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://localhost:6379/1"),
)


@app.task
def reflect(text: str) -> int:
    """A background job: the number of words in a reflection."""
    return len(text.split())
