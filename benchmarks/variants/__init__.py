"""One module per in-process variant; each imports only its own libraries.

Every module has ``CASES``: case number -> ``factory(ctx)``. A factory does any
untimed setup and returns ``work()``, the timed part: read the input, fit,
transform, and return the output materialised in memory. ``prepare(ctx)``
(where present) writes artifacts a case needs before it is timed (case 7's
fitted pipelines, the CLI's spec), in its own subprocess.
"""
