"""`labbook dissect`: take a trained network apart. dissection.py measures (dissection.json) and
draws on demand; robustness.py shifts and rotates images; figures.py draws with matplotlib."""
