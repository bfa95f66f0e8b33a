"""What the workers write into MLflow and the API reads back: tag names and the codes of MLflow's 'not found'.

The strings are what old versions and runs carry: rename the Python names, never the values.
"""

# On a job's run, its logged model and its registered version: the job (on a sweep's parent run: the sweep).
JOB_ID_TAG = "job_id"
PROMOTED_TAG = "promoted"  # on a version the champion gate decided: "true" or "false"
PROMOTION_REASON_TAG = "promotion_reason"  # beside it: why
ACCURACY_TAG, LOSS_TAG = "eval_echo_accuracy", "eval_loss"  # a version's held-out scores, set when it is registered

# The error codes with which MLflow's server says a version, alias, run or file is not there (which code
# depends on the call and the store behind it).
NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")
# Of them, those of an artifact download whose file is absent (an invalid parameter there is a fault, not an absence).
FILE_ABSENT_CODES = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")
