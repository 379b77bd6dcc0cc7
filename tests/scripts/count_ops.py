"""Count the TensorFlow ops of one ConvLSTM2D call (loop bodies included).

    KERAS_BACKEND=tensorflow python count_ops.py [ACTIVATIONS_JSON]

ACTIVATIONS_JSON is a list of keyword dicts (``[{}]`` by default); prints a
JSON list of {op type: count}, one per dict, for comparing pristine and patched Keras.
"""

import collections
import json
import sys

import keras
import tensorflow as tf

counts = []
for activations in json.loads(sys.argv[1]) if len(sys.argv) > 1 else [{}]:
    layer = keras.layers.ConvLSTM2D(4, 3, padding="same", return_sequences=True, **activations)
    # (traced right here, in this iteration: the loop variable is the one meant)
    function = tf.function(lambda x: layer(x)).get_concrete_function(  # noqa: B023
        tf.TensorSpec((2, 5, 8, 8, 3), tf.float32)
    )
    graph = function.graph.as_graph_def()
    ops = [node.op for node in graph.node] + [node.op for f in graph.library.function for node in f.node_def]
    counts.append(collections.Counter(ops))
print(json.dumps(counts))
