"""Choosing the device: a GPU only when one exists, a clear error at once when it does not."""

import time

import pytest
import tensorflow as tf

from contract.params import TrainingParams
from worker.engine.device import DeviceUnavailable, select_device
from worker.engine.train import train_model

HAS_GPU = bool(tf.config.list_physical_devices("GPU"))


def test_cpu_is_always_the_cpu():
    assert select_device("cpu") == "/CPU:0"


def test_auto_takes_the_gpu_only_when_there_is_one():
    assert select_device("auto") == ("/GPU:0" if HAS_GPU else "/CPU:0")


def test_gpu_without_a_gpu_is_a_clear_error():
    if HAS_GPU:
        assert select_device("gpu") == "/GPU:0"
        return
    with pytest.raises(DeviceUnavailable, match="device=gpu was requested but TensorFlow sees no GPU"):
        select_device("gpu")


def test_train_refuses_a_missing_gpu_before_training():
    if HAS_GPU:
        return  # there is nothing to refuse on a machine with a GPU
    reports = []
    start = time.monotonic()
    with pytest.raises(DeviceUnavailable, match="use device=auto or device=cpu"):
        train_model(TrainingParams(num_epochs=100, device="gpu", seed=1), on_progress=reports.append)
    assert reports == [] and time.monotonic() - start < 1.0


def test_result_names_the_device(trained):
    assert trained.params.device == "auto"
    assert trained.device == ("/GPU:0" if HAS_GPU else "/CPU:0")


def test_cpu_training_says_so(small):
    assert small.params.device == "cpu" and small.device == "/CPU:0"
