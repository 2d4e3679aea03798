;; A module that exports neither the SDK ABI nor `_start`.
(module
  (memory (export "memory") 1)
  (func (export "something_else")))
