"""`labbook site`: the class's static site. build.py publishes runs and studies through the run
gate; livelab.py exports the network for the live lab in the browser; svgsafe.py cleans figures."""
