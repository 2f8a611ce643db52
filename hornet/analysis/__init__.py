"""Analysis by job: ``measure`` (cost and speed), ``stats`` (suite statistics and reports), ``probe`` (trained models),
``draw`` (pictures of predictions). No Lightning needed."""
