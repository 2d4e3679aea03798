;; Exports whose types are not numbers only: the export-call ABI refuses to call them. (Function
;; references: every engine here loads them, where externref needs Wasmtime's GC and v128
;; WAMR's SIMD, both compiled out.)
(module
  (func (export "takes_ref") (param funcref) (result i32) (i32.const 0))
  (func (export "returns_ref") (result funcref) (ref.null func)))
