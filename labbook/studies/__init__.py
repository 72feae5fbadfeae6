"""`labbook study`: variants x seeds of ordinary runs and what the seeds allow to be said about the
difference. runner.py parses and runs a study (on_ray.py on a Ray cluster), report.py writes its
report; presets/ holds the example studies."""
