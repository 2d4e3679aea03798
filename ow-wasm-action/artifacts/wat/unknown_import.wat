;; Imports a function no executor provides; preparing it must name the import.
(module
  (import "env" "launch_missiles" (func (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
