;; An SDK-ABI module that answers `{}` to the parameters `{}`, and to anything else a result
;; that is a 100 MiB region of its memory: the host must refuse it by its length, without
;; copying it out.
(module
  (memory (export "memory") 1)
  (func (export "__ow_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "__ow_main") (param $ptr i32) (param $len i32) (result i64)
    ;; `{}`: echo the parameters' own region.
    (if (i32.le_u (local.get $len) (i32.const 2))
      (then
        (return (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
                        (i64.extend_i32_u (local.get $len))))))
    ;; 1600 pages of 64 KiB: 100 MiB past the first page.
    (if (i32.eq (memory.grow (i32.const 1600)) (i32.const -1))
      (then unreachable))
    ;; region (65536, 104857600) packed as ptr << 32 | len
    (i64.or (i64.shl (i64.const 65536) (i64.const 32)) (i64.const 104857600))))
