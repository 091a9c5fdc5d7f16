"""The project's metadata is pyproject.toml's; this adds the one C extension.

`streams.stages._router` is the launch reader's hot path (streams/stages/_router.c). It is
optional: where no C compiler is found the build goes on without it and the launch reader runs
the same rules in Python (streams/stages/ingest.py), only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streams.stages._router",
            ["streams/stages/_router.c"],
            optional=True,
            extra_compile_args=["-O2", "-std=c11"],
        )
    ]
)
