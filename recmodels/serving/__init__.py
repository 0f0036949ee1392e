"""Serving: :class:`RecService`, the one API the app and the CLI call, a thin facade over the data, the model and
the explainers; :class:`~recmodels.serving.dataset_views.DatasetViews` answers its calls over many users, and
:mod:`~recmodels.serving.concurrency` holds the thread policy of a process that serves many sessions.
:class:`~recmodels.serving.pipeline.PipelineService` (retrieve, then rank) is imported here, so that
``RecService.from_checkpoint`` opens a pipeline folder whichever module was imported first."""

from recmodels.serving.pipeline import PipelineService
from recmodels.serving.service import RecService

__all__ = ["PipelineService", "RecService"]
