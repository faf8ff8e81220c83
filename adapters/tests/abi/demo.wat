;; A hand-written module with the canonical-ABI boundary `lower --abi
;; canonical` gives the component of `demo.wit`: exports named
;; `<interface id>#<function>`, imports named by interface, flat signatures.
(module
  (import "demo:app/host@1.0.0" "log" (func $log (param i32 i32 i32)))
  (import "demo:app/host@1.0.0" "get-name" (func $get_name (param i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $posts (mut i32) (i32.const 0))
  ;; return areas
  (global $ret i32 (i32.const 256))
  (func $realloc (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $new i32) (result i32)
    (local $ptr i32)
    global.get $heap local.get $align i32.add i32.const 1 i32.sub
    i32.const 0 local.get $align i32.sub i32.and local.set $ptr
    local.get $ptr local.get $new i32.add global.set $heap
    block $ok
      loop $grow
        global.get $heap memory.size i32.const 16 i32.shl i32.le_u br_if $ok
        i32.const 1 memory.grow drop
        br $grow
      end
    end
    local.get $old if
      local.get $ptr local.get $old
      local.get $new local.get $old_size local.get $new local.get $old_size i32.lt_u select
      memory.copy
    end
    local.get $ptr)
  (func (export "demo:app/api@1.0.0#add") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.add)
  (func (export "demo:app/api@1.0.0#echo") (param i32 i32) (result i32)
    global.get $ret local.get 0 i32.store
    global.get $ret local.get 1 i32.store offset=4
    global.get $ret)
  (func (export "cabi_post_demo:app/api@1.0.0#echo") (param i32)
    global.get $posts i32.const 1 i32.add global.set $posts)
  (func (export "posts") (result i32) global.get $posts)
  ;; reading = { at: s64 @0, value: f32 @8, name: string @12 }, size 24
  (func (export "demo:app/api@1.0.0#sum") (param $ptr i32) (param $len i32) (result f64)
    (local $acc f64)
    block $done
      loop $next
        local.get $len i32.eqz br_if $done
        local.get $acc local.get $ptr f32.load offset=8 f64.promote_f32 f64.add
        local.get $ptr i64.load f64.convert_i64_s f64.add
        local.get $ptr i32.load offset=16 f64.convert_i32_u f64.add
        local.set $acc
        local.get $ptr i32.const 24 i32.add local.set $ptr
        local.get $len i32.const 1 i32.sub local.set $len
        br $next
      end
    end
    local.get $acc)
  ;; greet(greeting): log(greeting, 3), then return get-name()
  (func (export "demo:app/api@1.0.0#greet") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.const 3 call $log
    global.get $ret call $get_name
    global.get $ret)
  (func (export "demo:app/api@1.0.0#many") (param $p i32) (result i64)
    (local $i i32) (local $acc i64)
    block $done
      loop $next
        local.get $i i32.const 17 i32.eq br_if $done
        local.get $acc local.get $p local.get $i i32.add i64.load8_u i64.add local.set $acc
        local.get $i i32.const 1 i32.add local.set $i
        br $next
      end
    end
    local.get $acc)
  ;; maybe(x): some(n) -> ok(n * 2); none -> err("none")
  (func (export "demo:app/api@1.0.0#maybe") (param $disc i32) (param $x i32) (result i32)
    local.get $disc if
      global.get $ret i32.const 0 i32.store8
      global.get $ret local.get $x i32.const 2 i32.mul i32.store offset=4
    else
      global.get $ret i32.const 1 i32.store8
      global.get $ret i32.const 200 i32.store offset=4
      global.get $ret i32.const 4 i32.store offset=8
    end
    global.get $ret)
  (data (i32.const 200) "none")
)
