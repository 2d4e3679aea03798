;; A stdio-ABI command that never returns: the deadline must stop it.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $again (br $again))))
