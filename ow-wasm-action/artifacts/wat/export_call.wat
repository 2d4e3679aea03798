;; An export-call module: no imports, no memory, functions of numbers only. `main` is what an
;; action that names no `main` calls.
(module
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "add64") (param i64 i64) (result i64)
    (i64.add (local.get 0) (local.get 1)))
  (func (export "scale") (param f32 f64) (result f64)
    (f64.mul (f64.promote_f32 (local.get 0)) (local.get 1)))
  (func (export "half") (param f32) (result f32)
    (f32.div (local.get 0) (f32.const 2)))
  ;; Two results; dividing by zero traps.
  (func (export "divmod") (param i32 i32) (result i32 i32)
    (i32.div_s (local.get 0) (local.get 1))
    (i32.rem_s (local.get 0) (local.get 1)))
  (func (export "nothing"))
  (func (export "main") (result i32) (i32.const 42)))
