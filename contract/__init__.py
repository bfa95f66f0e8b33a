"""What the API and the workers share: training parameters, the job record and its store, task names,
logging and the common settings. Imports neither Flask, Celery nor TensorFlow."""
