"""The lab itself: MNIST (mnist.py reads the files, data.py splits them), the network (model.py),
training (train.py), evaluation (evaluate.py), and `labbook run`, which does all of it into a run
folder (experiment.py)."""
