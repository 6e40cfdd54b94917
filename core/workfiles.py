"""Names of the files a builder and the worker exchange (no heavy imports: every verb may
need them). The worker reads `job.json` and the dataset from its work folder and writes
into `out/`; builders move these in and out (a private folder, or a container's archive)."""

JOB_NAME = "job.json"
DATA_NAME = "data.jsonl"
OUT_DIR = "out"
ARTIFACT_NAME = "model.joblib"
RESULT_NAME = "result.json"
ERROR_NAME = "error.json"
OUTPUT_NAMES = (ARTIFACT_NAME, RESULT_NAME, ERROR_NAME)
# The trainer image runs the worker as this non-root user (see the Dockerfile).
TRAINER_UID = 10001
