"""lr_meta: learned learning-rate control and optimizer search in JAX/Flax."""

import setuptools

# Version floors are the oldest releases the code was written against; the
# measured environment (BUILD_NOTES.md) is jax/jaxlib 0.10.2, flax 0.12.8,
# optax 0.2.8, chex 0.1.92, rlax 0.1.9.
INSTALL_REQUIRES = [
    "jax>=0.4.30",
    "jaxlib>=0.4.30",
    "flax>=0.8.5",
    "optax>=0.2.4",
    "chex>=0.1.86",
    "rlax>=0.1.6",
    "distrax>=0.1.5",
    # distrax depends on an *unpinned* tfp-nightly; pin the build we tested so
    # a fresh install is reproducible.
    "tfp-nightly==0.26.0.dev20261027",
    "numpy>=1.26",
    "scipy>=1.11",
    "absl-py>=2.0",
    "ml_collections>=0.1.1",
    "orbax-checkpoint>=0.6",
    "flashbax>=0.1.2",
    "matplotlib>=3.8",
    "tqdm>=4.66",
    "tensorboardX>=2.6",
    "mnist1d>=0.0.2",
]

EXTRAS_REQUIRE = {
    # TFDS is optional: lr_meta reads local npz files first. On Python 3.11
    # tensorflow-datasets needs importlib_resources listed explicitly, needs
    # TensorFlow to prepare a data set, and with TensorFlow imported before
    # rlax, tfp asks for tf_keras.
    "tfds": [
        "tensorflow-datasets>=4.9",
        "importlib_resources>=6.0",
        "tensorflow-cpu>=2.15",
        "tf_keras>=2.15",
    ],
    "dev": [
        "pytest>=8.0",
        "pytest-xdist>=3.5",
        "hypothesis>=6.100",
        "nbformat>=5.9",
        "nbclient>=0.10",
        "ipykernel>=6.29",
    ],
}

setuptools.setup(
    name="lr_meta",
    version="0.1.0",
    description=(
        "Learned learning-rate controllers (DQN, PPO, REPS, actor-critic) and "
        "Neural Optimizer Search for JAX/Flax/optax."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["lr_meta", "lr_meta.*"]),
    package_data={"lr_meta": ["pretrained/*.msgpack", "pretrained/*.json"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
