//! `kv`: a key-value contract for tests, demos and benchmarks.
//!
//! | function | args | does |
//! | --- | --- | --- |
//! | `put` | key, value | sets key |
//! | `get` | key | returns the value (query) |
//! | `delete` | key | removes key |
//! | `transfer` | from, to, amount | moves `amount` between two decimal balances (read-modify-write) |
//! | `range` | start, end | returns up to 100 `key=value` lines in `[start, end)` (query) |

use crate::{Contract, ContractError, Ctx, arg_u64, expect_args};

/// The `kv` contract.
pub struct KvContract;

const FUNCTIONS: &[&str] = &["put", "get", "delete", "transfer", "range"];

fn balance(ctx: &mut dyn Ctx, key: &[u8]) -> Result<u64, ContractError> {
    match ctx.get(key)? {
        None => Ok(0),
        Some(v) => std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| ContractError::Refused("balance is not a decimal integer".into())),
    }
}

impl Contract for KvContract {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn functions(&self) -> &'static [&'static str] {
        FUNCTIONS
    }

    fn is_query(&self, function: &str) -> bool {
        matches!(function, "get" | "range")
    }

    fn invoke(
        &self,
        ctx: &mut dyn Ctx,
        function: &str,
        args: &[Vec<u8>],
    ) -> Result<Vec<u8>, ContractError> {
        match function {
            "put" => {
                expect_args(args, 2, "key value")?;
                ctx.put(&args[0], &args[1])?;
                Ok(Vec::new())
            }
            "get" => {
                expect_args(args, 1, "key")?;
                ctx.get(&args[0])?
                    .ok_or_else(|| ContractError::NotFound("no value at that key".into()))
            }
            "delete" => {
                expect_args(args, 1, "key")?;
                ctx.delete(&args[0])?;
                Ok(Vec::new())
            }
            "transfer" => {
                expect_args(args, 3, "from to amount")?;
                let amount = arg_u64(args, 2, "amount")?;
                if args[0] == args[1] {
                    return Err(ContractError::BadArgs("from and to must differ".into()));
                }
                let from = balance(ctx, &args[0])?;
                let to = balance(ctx, &args[1])?;
                let from = from
                    .checked_sub(amount)
                    .ok_or_else(|| ContractError::Refused("insufficient balance".into()))?;
                let to = to
                    .checked_add(amount)
                    .ok_or_else(|| ContractError::Refused("balance would overflow".into()))?;
                ctx.put(&args[0], from.to_string().as_bytes())?;
                ctx.put(&args[1], to.to_string().as_bytes())?;
                ctx.emit("transfer", amount.to_string().as_bytes())?;
                Ok(from.to_string().into_bytes())
            }
            "range" => {
                expect_args(args, 2, "start end")?;
                let rows = ctx.range(&args[0], &args[1], 100)?;
                let mut out = Vec::new();
                for (k, v) in rows {
                    out.extend_from_slice(&k);
                    out.push(b'=');
                    out.extend_from_slice(&v);
                    out.push(b'\n');
                }
                Ok(out)
            }
            other => Err(ContractError::UnknownFunction {
                contract: "kv".into(),
                function: other.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_ctx::MemCtx;
    use sphr_crypto::cert::Role;

    fn call(ctx: &mut MemCtx, f: &str, args: &[&str]) -> Result<Vec<u8>, ContractError> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        KvContract.invoke(ctx, f, &args)
    }

    #[test]
    fn put_get_delete() {
        let mut ctx = MemCtx::new(Role::Client);
        call(&mut ctx, "put", &["a", "1"]).unwrap();
        assert_eq!(call(&mut ctx, "get", &["a"]).unwrap(), b"1");
        call(&mut ctx, "delete", &["a"]).unwrap();
        assert!(matches!(
            call(&mut ctx, "get", &["a"]),
            Err(ContractError::NotFound(_))
        ));
    }

    #[test]
    fn transfer_moves_and_refuses_overdraft() {
        let mut ctx = MemCtx::new(Role::Client);
        call(&mut ctx, "put", &["alice", "100"]).unwrap();
        assert_eq!(
            call(&mut ctx, "transfer", &["alice", "bob", "30"]).unwrap(),
            b"70"
        );
        assert_eq!(ctx.state.get(b"bob".as_slice()).unwrap(), b"30");
        assert!(matches!(
            call(&mut ctx, "transfer", &["alice", "bob", "71"]),
            Err(ContractError::Refused(_))
        ));
        assert_eq!(ctx.state.get(b"alice".as_slice()).unwrap(), b"70");
        assert_eq!(ctx.events.len(), 1);
        assert!(matches!(
            call(&mut ctx, "transfer", &["alice", "bob", "-1"]),
            Err(ContractError::BadArgs(_))
        ));
    }

    #[test]
    fn bad_calls() {
        let mut ctx = MemCtx::new(Role::Client);
        assert!(matches!(
            call(&mut ctx, "put", &["a"]),
            Err(ContractError::BadArgs(_))
        ));
        assert!(matches!(
            call(&mut ctx, "explode", &[]),
            Err(ContractError::UnknownFunction { .. })
        ));
        call(&mut ctx, "put", &["k1", "v1"]).unwrap();
        call(&mut ctx, "put", &["k2", "v2"]).unwrap();
        assert_eq!(
            call(&mut ctx, "range", &["k", "l"]).unwrap(),
            b"k1=v1\nk2=v2\n"
        );
    }
}
