"""Layer 4, cohorts: a manifest of patients (one run request each), their runs as Dask tasks, and the cohort's
summary tables and figure."""
