"""Code that runs inside the *target* interpreter, with its Keras.

These modules are executed as standalone scripts by the environment's own
Python (``python runner.py ...``): they import nothing from convlstm-patch
and only numpy, the standard library and the Keras under test.
"""
