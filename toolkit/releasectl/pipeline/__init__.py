"""The pipeline: the pull-request check, proposals, the watch, the workflows' glue."""
