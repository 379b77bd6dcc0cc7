"""convlstm-patch: give Keras's ConvLSTM layers five separate activations."""

__version__ = "0.1.0"
