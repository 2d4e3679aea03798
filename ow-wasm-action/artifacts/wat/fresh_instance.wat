;; An SDK-ABI module that counts its activations in its own memory and answers `{"n":N}`:
;; every activation gets a fresh instance, so it always answers `{"n":1}`.
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "{\22n\22:0}")
  (func (export "__ow_alloc") (param i32) (result i32) (i32.const 2048))
  (func (export "__ow_main") (param i32 i32) (result i64)
    ;; The digit at 1029 counts up from '0'.
    (i32.store8 (i32.const 1029) (i32.add (i32.load8_u (i32.const 1029)) (i32.const 1)))
    ;; region (1024, 7) packed as ptr << 32 | len
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 7))))
