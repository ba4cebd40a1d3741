"""The SageMaker scikit-learn image the jobs and endpoints run in on AWS, and the exact
library versions inside it: one place for the fact that local jobs, the hyperparameter
catalog and the model archives must agree with.

Image ``sagemaker-scikit-learn:1.4-2-cpu-py3`` (the default ``MLPIPE_SKLEARN_IMAGE_URI``), as
built by aws/sagemaker-scikit-learn-container: ``docker/1.4-2/base/Dockerfile.cpu`` installs
Python 3.10 and ``numpy==2.1.0 scikit-learn==1.4.2 pyarrow==17.0.0``; ``requirements.txt``
pins ``pandas==2.3.2`` and asks ``scipy>=1.9.0``. scipy, joblib and threadpoolctl are not
pinned there: the versions below are the newest that install with those pins on Python 3.10
(what the image's resolver took), so they are our best reading, not AWS's word.

``make jobs-venv`` builds ``.venv-jobs`` from ``python3 sagemaker_jobs/mlcontract/image.py``
(these pins, one per line) with Python ``PYTHON_VERSION``; the local job runner runs the job
scripts there (``MLPIPE_JOB_PYTHON``) and ``make catalog`` generates ``algorithms.json`` there.
Standard library only, like the rest of mlcontract.
"""

from __future__ import annotations

import sys

IMAGE_TAG = "1.4-2"  # the framework version in the image URI (...:1.4-2-cpu-py3)
PYTHON_VERSION = "3.10"
PINS: dict[str, str] = {
    "scikit-learn": "1.4.2",
    "numpy": "2.1.0",
    "pandas": "2.3.2",
    "pyarrow": "17.0.0",
    "scipy": "1.15.3",
    "joblib": "1.5.2",
    "threadpoolctl": "3.6.0",
}


def requirements() -> str:
    return "".join(f"{name}=={version}\n" for name, version in PINS.items())


if __name__ == "__main__":
    sys.stdout.write(requirements())
