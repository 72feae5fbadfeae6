"""labbook: a lab-book builder for the MNIST convolutional-network experiment.

From Python (and Jupyter), the same stages as the command line:

    labbook.run(preset="seed", epochs=..., settings={...})  -> Run   (train; `labbook run`)
    labbook.open("runs/<id>")                                -> Run   (any run folder, checked)
    Run.dissect(), Run.report(lang=..., format=...), Run.metrics, Run.history, Run.config, Run.figures
    labbook.study("shift-robustness" or a study file)        -> Study (its table and differences)
    labbook.set_language("zh" | "en")                        (figures and cards in Jupyter)

Errors are labbook.errors.UserError, with the same one-line message the CLI prints. See
docs/python.md.
"""

__version__ = "0.2.0"

_API = ("run", "open", "study", "set_language", "Run", "Study", "Figure", "RunNotFinished")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    # The API is loaded on first use: `import labbook.runs.reader` and the CLI's start stay as light as they were.
    if name in _API:
        from labbook import api
        return getattr(api, name)
    raise AttributeError(f"module 'labbook' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
