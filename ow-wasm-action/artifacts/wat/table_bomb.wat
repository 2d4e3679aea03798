;; A WASI command that grows its function table 10,000 elements at a time until growing fails,
;; then traps: the table counterpart of memory_bomb.wat. (It exports a memory because WAMR
;; refuses a WASI command without one.)
(module
  (memory (export "memory") 1)
  (table $table 1 funcref)
  (func (export "_start")
    (loop $again
      (br_if $again
        (i32.ne (table.grow $table (ref.null func) (i32.const 10000)) (i32.const -1))))
    unreachable))
