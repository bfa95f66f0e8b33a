"""The Celery task names: the API enqueues by name (send_task), the workers register under them."""

TRAIN = "echo_rnn.train"
