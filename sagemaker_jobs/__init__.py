"""The SageMaker job scripts.

Each script runs as a top-level program from a directory that holds all of them (the training
job's extracted sourcedir.tar.gz, the processing job's code input, this directory locally), so
train.py and evaluate.py import their shared helpers as the sibling module ``jobkit``.

Tests and benchmarks import the scripts as ``sagemaker_jobs.<script>`` instead. For them this
directory is appended to sys.path (after everything else, so it shadows no installed module),
which makes ``jobkit`` importable the same way. Import it as ``jobkit`` in-process too; as
``sagemaker_jobs.jobkit`` it would be a second copy with its own JobError class.
"""

import os
import sys

_JOBS_DIR = os.path.dirname(os.path.abspath(__file__))
if _JOBS_DIR not in sys.path:
    sys.path.append(_JOBS_DIR)
