"""docstrings: an entry for each of the five after `recurrent_activation:`.

`test_noop`: snippets the transformer must leave as they are; `test_fix`:
before and after (each after is also checked to be a fixed point).
"""

import pytest
from transform_helpers import (
    apply,
    assert_documented_after_anchor,
    assert_transforms,
    assert_unchanged,
    class_docstring,
    dedent,
)

from patcher.spec import Parameter
from patcher.transform.docstrings import DocstringTransformer


def inserted_lines(before, after):
    before_lines = set(dedent(before).splitlines())
    return [line for line in dedent(after).splitlines() if line not in before_lines]


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(
            '''
            class Layer:
                """Convolutional LSTM.

                Args:
                    filters: Integer.
                    activation: Activation function to use.
                """
            ''',
            id="no-anchor",
        ),
        pytest.param(
            '''
            class Other:
                """Args:
                    recurrent_activation: Activation function to use.
                """
            ''',
            id="non-target-class",
        ),
        pytest.param(
            '''
            class Layer:
                def __init__(self):
                    """Args:
                        recurrent_activation: Activation function to use.
                    """
            ''',
            id="method-docstring",
        ),
    ],
)
def test_noop(code):
    assert_unchanged(DocstringTransformer, code)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(
            '''
            class Layer:
                """2D Convolutional LSTM.

                Args:
                  filters: Integer, the dimensionality of the output space.
                  recurrent_activation: Activation function to use
                    for the recurrent step.
                  use_bias: Boolean.
                """
            ''',
            '''
            class Layer:
                """2D Convolutional LSTM.

                Args:
                  filters: Integer, the dimensionality of the output space.
                  recurrent_activation: Activation function to use
                    for the recurrent step.
                  activation_i: Activation function for the candidate cell input,
                    `c = f * c_tm1 + i * activation_i(x_c + h_c)`. Default: `None`, which
                    uses `activation`.
                  activation_o: Activation function applied to the cell state to form the
                    output, `h = o * activation_o(c)`. Default: `None`, which uses
                    `activation`.
                  recurrent_activation_f: Activation function for the forget gate `f`.
                    Default: `None`, which uses `recurrent_activation`.
                  recurrent_activation_i: Activation function for the input gate `i`.
                    Default: `None`, which uses `recurrent_activation`.
                  recurrent_activation_o: Activation function for the output gate `o`.
                    Default: `None`, which uses `recurrent_activation`.
                  use_bias: Boolean.
                """
            ''',
            id="args-2-space",
        ),
        pytest.param(
            '''
            class Cell:
                """Cell class for the ConvLSTM layer.

                Args:
                    filters: int, the dimension of the output space.
                    recurrent_activation: Activation function to use for the recurrent step.
                    use_bias: Boolean, (default `True`), whether the layer
                        should use a bias vector.

                Call arguments:
                    inputs: A (2+ `rank`)D tensor.
                """
            ''',
            '''
            class Cell:
                """Cell class for the ConvLSTM layer.

                Args:
                    filters: int, the dimension of the output space.
                    recurrent_activation: Activation function to use for the recurrent step.
                    activation_i: Activation function for the candidate cell input,
                        `c = f * c_tm1 + i * activation_i(x_c + h_c)`. Default: `None`,
                        which uses `activation`.
                    activation_o: Activation function applied to the cell state to form the
                        output, `h = o * activation_o(c)`. Default: `None`, which uses
                        `activation`.
                    recurrent_activation_f: Activation function for the forget gate `f`.
                        Default: `None`, which uses `recurrent_activation`.
                    recurrent_activation_i: Activation function for the input gate `i`.
                        Default: `None`, which uses `recurrent_activation`.
                    recurrent_activation_o: Activation function for the output gate `o`.
                        Default: `None`, which uses `recurrent_activation`.
                    use_bias: Boolean, (default `True`), whether the layer
                        should use a bias vector.

                Call arguments:
                    inputs: A (2+ `rank`)D tensor.
                """
            ''',
            id="args-4-space",
        ),
        pytest.param(
            '''
            class Layer:
                """Convolutional LSTM.

                Args:
                        filters: Integer, the dimensionality of the output space
                            (i.e. the number of output filters in the convolution).
                        recurrent_activation: Activation function to use.
                """
            ''',
            '''
            class Layer:
                """Convolutional LSTM.

                Args:
                        filters: Integer, the dimensionality of the output space
                            (i.e. the number of output filters in the convolution).
                        recurrent_activation: Activation function to use.
                        activation_i: Activation function for the candidate cell input,
                            `c = f * c_tm1 + i * activation_i(x_c + h_c)`. Default: `None`,
                            which uses `activation`.
                        activation_o: Activation function applied to the cell state to form
                            the output, `h = o * activation_o(c)`. Default: `None`, which
                            uses `activation`.
                        recurrent_activation_f: Activation function for the forget gate `f`.
                            Default: `None`, which uses `recurrent_activation`.
                        recurrent_activation_i: Activation function for the input gate `i`.
                            Default: `None`, which uses `recurrent_activation`.
                        recurrent_activation_o: Activation function for the output gate `o`.
                            Default: `None`, which uses `recurrent_activation`.
                """
            ''',
            id="args-8-space",
        ),
        pytest.param(
            '''
            class Layer:
                """Convolutional LSTM.

                # Arguments
                    filters: Integer, the dimensionality of the output space
                        (i.e. the number output of filters in the convolution).
                    recurrent_activation: Activation function to use
                        for the recurrent step
                        (see [activations](../activations.md)).
                    use_bias: Boolean, whether the layer uses a bias vector.

                # Input shape
                    5D tensor.
                """
            ''',
            '''
            class Layer:
                """Convolutional LSTM.

                # Arguments
                    filters: Integer, the dimensionality of the output space
                        (i.e. the number output of filters in the convolution).
                    recurrent_activation: Activation function to use
                        for the recurrent step
                        (see [activations](../activations.md)).
                    activation_i: Activation function for the candidate cell input,
                        `c = f * c_tm1 + i * activation_i(x_c + h_c)`. Default: `None`,
                        which uses `activation`.
                    activation_o: Activation function applied to the cell state to form the
                        output, `h = o * activation_o(c)`. Default: `None`, which uses
                        `activation`.
                    recurrent_activation_f: Activation function for the forget gate `f`.
                        Default: `None`, which uses `recurrent_activation`.
                    recurrent_activation_i: Activation function for the input gate `i`.
                        Default: `None`, which uses `recurrent_activation`.
                    recurrent_activation_o: Activation function for the output gate `o`.
                        Default: `None`, which uses `recurrent_activation`.
                    use_bias: Boolean, whether the layer uses a bias vector.

                # Input shape
                    5D tensor.
                """
            ''',
            id="arguments-heading",
        ),
    ],
)
def test_fix(before, after):
    assert_transforms(DocstringTransformer, before, after)
    # Check the expectations themselves, so a hand edit cannot break the rules.
    for line in inserted_lines(before, after):
        assert len(line) <= 80, line
        assert line.count("`") % 2 == 0, f"code span broken across lines: {line!r}"


def test_docstring_wrap_never_breaks_inside_code_span():
    # Without protection, textwrap would break this span after "alpha"
    # (the first line would end at column 79).
    param = Parameter(
        name="activation_i",
        inherits="activation",
        gate="c",
        doc="Words to push the span to the end of the line: `alpha beta gamma` here.",
    )
    before = '''
        class Cell:
            """Args:
                recurrent_activation: Activation.
            """
        '''
    after = '''
        class Cell:
            """Args:
                recurrent_activation: Activation.
                activation_i: Words to push the span to the end of the line:
                    `alpha beta gamma` here.
            """
        '''
    assert_transforms(DocstringTransformer, before, after, params=(param,))


def test_docstring_anchor_on_closing_line():
    code, _ = apply(
        DocstringTransformer,
        '''
        class Cell:
            """Args:
                filters: Integer.
                recurrent_activation: Activation function to use."""
        ''',
    )
    assert_documented_after_anchor(class_docstring(code, "Cell"))
