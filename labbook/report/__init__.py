"""`labbook report`: the lab report. analysis.py turns a run's numbers into sourced facts and
sentences, render.py fills the templates (HTML), pdf.py lays the PDF out with WeasyPrint."""
