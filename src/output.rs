//! Printing that never panics. `print!` and `eprintln!` panic when stdout or
//! stderr is a closed pipe (`bpsms send … | tee run.log`, then Ctrl-C ends
//! `tee` too) or a full device; then a stop or a shutdown would die with the
//! print. These macros drop the text instead: what the operator asked for
//! still happens, only its message is lost.

/// `println!` to stdout, dropping the line if stdout refuses it.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` to stdout, dropping the text if stdout refuses it.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut stdout = ::std::io::stdout().lock();
        let _ = ::std::write!(stdout, $($arg)*).and_then(|()| stdout.flush());
    }};
}

/// `eprintln!` to stderr, dropping the line if stderr refuses it.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}

/// `eprint!` to stderr (a prompt), dropping the text if stderr refuses it.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::write!(::std::io::stderr().lock(), $($arg)*);
    }};
}
