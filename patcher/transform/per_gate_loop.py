"""Add the per-gate loop a Keras 3 LSTM/GRU layer calls instead of its fused kernel."""

from __future__ import annotations

import libcst as cst

from patcher.fused import Names, per_gate_loop_method
from patcher.spec import fused_kernels
from patcher.transform.base import ClassScopedTransformer
from patcher.transform.shapes import contains_self_attribute

# The module names the loops use, bound by every Keras 3 lstm.py and gru.py
# (`from keras.src import backend`, `... import ops`); fused_guard.py gives a
# layer in a module without them the branch guard instead.
LOOP_NAMES = {"backend": "backend", "ops": "ops"}

# One loop per kernel with fused.toml's `per_gate_loop`, written as a method at
# class level (the docstring keeps its indentation), `{gate}` standing for the
# name of the parameter computing that gate. Each mirrors the PyTorch backend's
# own plain loop (Keras 3.14+'s _fallback_lstm, 3.15+'s _fallback_gru): the
# inputs of every step projected in one matmul, then one recurrent matmul per
# step. The steps use torch.Tensor methods (unbind, addmm, chunk), so no module
# has to import torch: they run only after the backend check.
#
# FRAME is what the two share: backend.lstm's and backend.gru's signature, the
# guard, the projection, the outputs; each kernel's PARTS fill it (a part's
# lines after the first carry their indentation).
FRAME = '''
    def {{method}}(
        self,
        inputs,
        {state}
        mask,
        kernel,
        recurrent_kernel,
        bias,
        activation=None,
        recurrent_activation=None,
        return_sequences=False,
        go_backwards=False,
        unroll=False,{options}
        **others,
    ):
        """{doc}
        """
        if (
            backend.backend() != "torch"
            or mask is not None{guard}
            or getattr(self, "use_cudnn", "auto") is True
            or others
        ):
            raise NotImplementedError
        cell = self.cell
        kernel = ops.convert_to_tensor(kernel)
        recurrent_kernel = ops.convert_to_tensor(recurrent_kernel)
        x = ops.convert_to_tensor(inputs).to(kernel.dtype).matmul(kernel)
        if bias is not None:
            {bias}
        if go_backwards:
            x = x.flip(1)
        {start}
        outputs = []
        # torch.Tensor's own methods (to, matmul, unbind, addmm, chunk): PyTorch only.
        for x_t in x.unbind(1):
            {step}
            if return_sequences:
                outputs.append(h)
        if return_sequences:
            outputs = ops.stack(outputs, axis=1)
        else:
            outputs = ops.expand_dims(h, 1)
        return h, outputs, {states}
'''
PARTS = {
    "lstm": {
        "state": "initial_state_h,\n        initial_state_c,",
        "options": "",
        "doc": """backend.lstm for a cell whose per-gate activations override what
        they inherit (added by convlstm-patch): under PyTorch, on any device,
        the loop of the backend's own CPU path with each gate computed by the
        cell's function for it, never cuDNN. Under another backend, with a
        mask, with use_cudnn=True or with an argument it does not know it
        raises NotImplementedError, as a backend does where it cannot run,
        and the layer runs its cell loop.""",
        "guard": "",
        "bias": "x = x + ops.convert_to_tensor(bias)",
        "start": """h = ops.convert_to_tensor(initial_state_h).to(kernel.dtype)
        c = ops.convert_to_tensor(initial_state_c).to(kernel.dtype)""",
        "step": """z_i, z_f, z_c, z_o = x_t.addmm(h, recurrent_kernel).chunk(4, 1)
            i = cell.{i}(z_i)
            f = cell.{f}(z_f)
            c = f * c + i * cell.{c}(z_c)
            h = cell.{o}(z_o) * cell.{h}(c)""",
        "states": "[h, c]",
    },
    "gru": {
        "state": "initial_state,",
        "options": "\n        reset_after=True,",
        "doc": """backend.gru for a cell whose per-gate activations override what
        they inherit (added by convlstm-patch): under PyTorch, on any device,
        the loop of the backend's own CPU path with the update and reset
        gates computed by the cell's functions for them, never cuDNN. Under
        another backend, with reset_after=False or a mask (as PyTorch's own
        path), with use_cudnn=True or with an argument it does not know it
        raises NotImplementedError, as a backend does where it cannot run,
        and the layer runs its cell loop.""",
        "guard": "\n            or not reset_after",
        "bias": """bias = ops.convert_to_tensor(bias)
            x = x + bias[0]""",
        "start": "h = ops.convert_to_tensor(initial_state).to(kernel.dtype)",
        "step": """if bias is None:
                h_proj = h.matmul(recurrent_kernel)
            else:
                h_proj = bias[1].addmm(h, recurrent_kernel)
            x_z, x_r, x_h = x_t.chunk(3, 1)
            h_z, h_r, h_h = h_proj.chunk(3, 1)
            z = cell.{z}(x_z + h_z)
            r = cell.{r}(x_r + h_r)
            hh = cell.activation(x_h + r * h_h)
            h = z * h + (1.0 - z) * hh""",
        "states": "[h]",
    },
}
LOOPS = {kernel: FRAME.format(**parts) for kernel, parts in PARTS.items()}


def binds_loop_names(names: Names) -> bool:
    """Does the module bind the names the loops use, to Keras's modules of those names?"""
    return all(names.bound.get(name, "").split(".")[-1] == module for name, module in LOOP_NAMES.items())


class PerGateLoopTransformer(ClassScopedTransformer):
    """A layer whose code calls ``self._per_gate_lstm`` (fused_guard.py writes the call in
    place of ``backend.lstm(...)``) gains that method, right after the method calling it::

        def inner_loop(self, sequences, initial_state, mask, training=False):
            ...
            out = (backend.lstm if not self.cell._overriding_activations else self._per_gate_lstm)(...)
        def _per_gate_lstm(self, inputs, initial_state_h, ...):   # LOOPS["lstm"]
            ...

    Without the parameter of every gate the loop computes, nothing is added
    (the pipeline then reports the missing edit).
    """

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        if self.role == "layer" and isinstance(updated_node.body, cst.IndentedBlock):
            updated_node = updated_node.with_changes(body=self._with_loops(updated_node.body))
        return super().leave_ClassDef(original_node, updated_node)

    def _with_loops(self, block: cst.IndentedBlock) -> cst.IndentedBlock:
        defined = {statement.name.value for statement in block.body if isinstance(statement, cst.FunctionDef)}
        body: list[cst.BaseStatement] = []
        for statement in block.body:
            body.append(statement)
            if not isinstance(statement, cst.FunctionDef):
                continue
            for kernel, method in _methods().items():
                if not contains_self_attribute(statement, method):
                    continue
                if method not in defined:
                    loop = self._loop(kernel, method)
                    if loop is None:
                        continue
                    body.append(loop)
                    defined.add(method)
                self.record("per-gate loop")
        return block.with_changes(body=body)

    def _loop(self, kernel: str, method: str) -> cst.FunctionDef | None:
        gates = {param.gate: param.name for param in self.params}
        try:
            text = LOOPS[kernel].format(method=method, **gates)
        except KeyError:
            return None  # a parameter set without one of the loop's gates
        definition = cst.parse_module(f"class _:{text}").body[0]
        assert isinstance(definition, cst.ClassDef)
        function = definition.body.body[0]
        assert isinstance(function, cst.FunctionDef)
        return function.with_changes(leading_lines=[cst.EmptyLine(indent=False)])


def _methods() -> dict[str, str]:
    """kernel name -> the per-gate loop method standing in for it."""
    return {entry.name: per_gate_loop_method(entry) for entry in fused_kernels().entries if entry.per_gate_loop}
