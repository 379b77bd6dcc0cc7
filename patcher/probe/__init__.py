"""Code that runs inside the *target* interpreter, with its Keras.

runner.py (ConvLSTM) and rnn_runner.py (LSTM, GRU) are executed as scripts by
the environment's own Python (``python runner.py ...``). convlstm-patch is not
importable there, so runner.py imports this folder as the package
``_convlstm_patch_probe``; its modules import each other relatively, and
nothing but numpy, the standard library and the Keras under test.
"""
