;; A WASI command whose start function (run while the instance is made) never returns: the
;; deadline must stop it there too.
(module
  (memory (export "memory") 1)
  (func $spin (loop $again (br $again)))
  (start $spin)
  (func (export "_start")))
