"""The ``prunekit`` command line (thin: parse, build a spec, call the library, render)."""
