"""Training: the time-ordered split, the search over candidates and their ensemble, and the
MLflow run that logs it and registers the chosen model as the challenger."""
