"""t2v: stochastic video prediction and text/label-conditioned video generation with likelihood models."""

from setuptools import find_packages, setup

# Ranges installed and tested together (TF 2.21, TFP 0.25 with tf-keras 2.21 beside Keras 3.15).
INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    "tensorflow-probability>=0.25,<0.26",
    "tf-keras>=2.21,<2.22",  # TFP 0.25 imports tf-keras; t2v's own layers are Keras 3
    "keras>=3.15,<4",
    "tensorflow-datasets>=4.9.10,<4.10",
    "tensorflow-hub>=0.16.1,<0.17",
    "importlib_resources>=6",  # TFDS 4.9.10 imports it to prepare datasets but does not declare it
    "absl-py>=2.1",
    "tensorboard>=2.21,<2.22",
    "matplotlib>=3.8,<4",  # the paper-experiment plots (tested with 3.11.2)  # to view the training curves and GIF samples the trainer writes
    "numpy>=1.26",
    "pillow>=10",  # GIF encoding for samples and TensorBoard video summaries
    # PyAV bundles FFmpeg (with libx264) in its wheel: it encodes the decoder's MP4s and decodes users'
    # mp4/avi/gif/webm/mov for the video_folder problem, with no system ffmpeg.
    "av>=18.1,<19",
]

setup(
    name="t2v",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["t2v", "t2v.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    # scipy: the independent reference (sqrtm) the Frechet distance is tested against.
    # pytest-xdist: the suite runs in two processes (pytest.ini), since most of its time is single-threaded tracing.
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.5", "scipy>=1.11"]},
)
