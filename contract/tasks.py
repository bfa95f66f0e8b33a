"""The Celery task names: the API enqueues by name (send_task), the workers register under them."""

TRAIN = "echo_rnn.train"
TRAIN_GROUP = "echo_rnn.train_group"  # args: sweep id, group index, the group's job ids
