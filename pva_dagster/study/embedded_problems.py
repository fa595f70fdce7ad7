"""A small MBPP-format problem set written for this project, for offline runs of the whole pipeline.

Why not a slice of MBPP: the embedded model (SmolLM2-135M) solves about 5 % of real MBPP, which leaves the
"correct" class nearly empty and the study meaningless. So about 40 % of these problems are one-liners whose
text states the function name and signature, and the rest climb through loops and branches to nested logic,
giving cyclomatic complexities from 1 to 7+ for the stratified splits. Problems and code are original.
"""

from __future__ import annotations

import textwrap
from typing import Any


def _problem(text: str, code: str, tests: tuple[str, str, str]) -> dict[str, Any]:
    return {"text": text, "code": textwrap.dedent(code).strip() + "\n", "test_list": list(tests)}


_PROBLEMS: list[dict[str, Any]] = [
    # ---- one-liners, name and signature in the text -------------------------------------------------
    _problem(
        "Write a function add_numbers(a, b) that returns the sum of a and b.",
        """
        def add_numbers(a, b):
            return a + b
        """,
        ("assert add_numbers(1, 2) == 3", "assert add_numbers(-4, 4) == 0", "assert add_numbers(10, 25) == 35"),
    ),
    _problem(
        "Write a function square(n) that returns n multiplied by itself.",
        """
        def square(n):
            return n * n
        """,
        ("assert square(3) == 9", "assert square(0) == 0", "assert square(-5) == 25"),
    ),
    _problem(
        "Write a function max_of_two(a, b) that returns the larger of a and b.",
        """
        def max_of_two(a, b):
            return max(a, b)
        """,
        ("assert max_of_two(3, 7) == 7", "assert max_of_two(9, 2) == 9", "assert max_of_two(-1, -6) == -1"),
    ),
    _problem(
        "Write a function to_upper(s) that returns the string s in upper case.",
        """
        def to_upper(s):
            return s.upper()
        """,
        ("assert to_upper('hello') == 'HELLO'", "assert to_upper('MiXeD') == 'MIXED'", "assert to_upper('') == ''"),
    ),
    _problem(
        "Write a function list_length(items) that returns the number of elements in the list items.",
        """
        def list_length(items):
            return len(items)
        """,
        ("assert list_length([1, 2, 3]) == 3", "assert list_length([]) == 0", "assert list_length(['a']) == 1"),
    ),
    _problem(
        "Write a function is_even(n) that returns True if n is even and False otherwise.",
        """
        def is_even(n):
            return n % 2 == 0
        """,
        ("assert is_even(4) == True", "assert is_even(7) == False", "assert is_even(0) == True"),
    ),
    _problem(
        "Write a function multiply(a, b) that returns the product of a and b.",
        """
        def multiply(a, b):
            return a * b
        """,
        ("assert multiply(3, 4) == 12", "assert multiply(-2, 5) == -10", "assert multiply(7, 0) == 0"),
    ),
    _problem(
        "Write a function subtract(a, b) that returns a minus b.",
        """
        def subtract(a, b):
            return a - b
        """,
        ("assert subtract(10, 4) == 6", "assert subtract(3, 8) == -5", "assert subtract(0, 0) == 0"),
    ),
    _problem(
        "Write a function cube(n) that returns n raised to the third power.",
        """
        def cube(n):
            return n ** 3
        """,
        ("assert cube(2) == 8", "assert cube(-3) == -27", "assert cube(1) == 1"),
    ),
    _problem(
        "Write a function first_element(items) that returns the first element of the list items.",
        """
        def first_element(items):
            return items[0]
        """,
        ("assert first_element([5, 6, 7]) == 5", "assert first_element(['x']) == 'x'",
         "assert first_element([[1], 2]) == [1]"),
    ),
    _problem(
        "Write a function last_element(items) that returns the last element of the list items.",
        """
        def last_element(items):
            return items[-1]
        """,
        ("assert last_element([5, 6, 7]) == 7", "assert last_element(['x']) == 'x'",
         "assert last_element([1, [2, 3]]) == [2, 3]"),
    ),
    _problem(
        "Write a function reverse_string(s) that returns the string s reversed.",
        """
        def reverse_string(s):
            return s[::-1]
        """,
        ("assert reverse_string('abc') == 'cba'", "assert reverse_string('racecar') == 'racecar'",
         "assert reverse_string('') == ''"),
    ),
    _problem(
        "Write a function sum_list(numbers) that returns the sum of all numbers in the list.",
        """
        def sum_list(numbers):
            return sum(numbers)
        """,
        ("assert sum_list([1, 2, 3]) == 6", "assert sum_list([]) == 0", "assert sum_list([-5, 5, 10]) == 10"),
    ),
    _problem(
        "Write a function min_of_list(numbers) that returns the smallest number in the list.",
        """
        def min_of_list(numbers):
            return min(numbers)
        """,
        ("assert min_of_list([4, 2, 8]) == 2", "assert min_of_list([7]) == 7", "assert min_of_list([-1, -9, 0]) == -9"),
    ),
    _problem(
        "Write a function max_of_list(numbers) that returns the largest number in the list.",
        """
        def max_of_list(numbers):
            return max(numbers)
        """,
        ("assert max_of_list([4, 2, 8]) == 8", "assert max_of_list([7]) == 7", "assert max_of_list([-1, -9, -3]) == -1"),
    ),
    _problem(
        "Write a function to_lower(s) that returns the string s in lower case.",
        """
        def to_lower(s):
            return s.lower()
        """,
        ("assert to_lower('HELLO') == 'hello'", "assert to_lower('MiXeD') == 'mixed'", "assert to_lower('abc') == 'abc'"),
    ),
    _problem(
        "Write a function string_length(s) that returns the number of characters in the string s.",
        """
        def string_length(s):
            return len(s)
        """,
        ("assert string_length('hello') == 5", "assert string_length('') == 0", "assert string_length('a b') == 3"),
    ),
    _problem(
        "Write a function is_odd(n) that returns True if n is odd and False otherwise.",
        """
        def is_odd(n):
            return n % 2 == 1
        """,
        ("assert is_odd(3) == True", "assert is_odd(8) == False", "assert is_odd(-7) == True"),
    ),
    _problem(
        "Write a function double(n) that returns two times n.",
        """
        def double(n):
            return 2 * n
        """,
        ("assert double(4) == 8", "assert double(0) == 0", "assert double(-3) == -6"),
    ),
    _problem(
        "Write a function average(numbers) that returns the arithmetic mean of a non-empty list of numbers.",
        """
        def average(numbers):
            return sum(numbers) / len(numbers)
        """,
        ("assert average([1, 2, 3]) == 2", "assert average([5]) == 5", "assert average([1, 2]) == 1.5"),
    ),
    _problem(
        "Write a function concat_strings(a, b) that returns the string a followed by the string b.",
        """
        def concat_strings(a, b):
            return a + b
        """,
        ("assert concat_strings('foo', 'bar') == 'foobar'", "assert concat_strings('', 'x') == 'x'",
         "assert concat_strings('a ', 'b') == 'a b'"),
    ),
    _problem(
        "Write a function count_char(s, c) that returns how many times the character c occurs in the string s.",
        """
        def count_char(s, c):
            return s.count(c)
        """,
        ("assert count_char('banana', 'a') == 3", "assert count_char('hello', 'z') == 0",
         "assert count_char('aaa', 'a') == 3"),
    ),
    _problem(
        "Write a function absolute_value(n) that returns the absolute value of n.",
        """
        def absolute_value(n):
            return abs(n)
        """,
        ("assert absolute_value(-5) == 5", "assert absolute_value(3) == 3", "assert absolute_value(0) == 0"),
    ),
    _problem(
        "Write a function remainder(a, b) that returns the remainder of dividing a by b.",
        """
        def remainder(a, b):
            return a % b
        """,
        ("assert remainder(10, 3) == 1", "assert remainder(9, 3) == 0", "assert remainder(7, 10) == 7"),
    ),
    _problem(
        "Write a function is_positive(n) that returns True if n is greater than zero.",
        """
        def is_positive(n):
            return n > 0
        """,
        ("assert is_positive(5) == True", "assert is_positive(0) == False", "assert is_positive(-2) == False"),
    ),
    _problem(
        "Write a function celsius_to_fahrenheit(c) that converts a temperature from Celsius to Fahrenheit.",
        """
        def celsius_to_fahrenheit(c):
            return c * 9 / 5 + 32
        """,
        ("assert celsius_to_fahrenheit(0) == 32", "assert celsius_to_fahrenheit(100) == 212",
         "assert celsius_to_fahrenheit(-40) == -40"),
    ),
    _problem(
        "Write a function rectangle_area(width, height) that returns the area of a rectangle.",
        """
        def rectangle_area(width, height):
            return width * height
        """,
        ("assert rectangle_area(3, 4) == 12", "assert rectangle_area(5, 5) == 25", "assert rectangle_area(0, 9) == 0"),
    ),
    _problem(
        "Write a function square_perimeter(side) that returns the perimeter of a square with the given side.",
        """
        def square_perimeter(side):
            return 4 * side
        """,
        ("assert square_perimeter(3) == 12", "assert square_perimeter(0) == 0", "assert square_perimeter(10) == 40"),
    ),
    _problem(
        "Write a function sort_list(numbers) that returns a new list with the numbers in ascending order.",
        """
        def sort_list(numbers):
            return sorted(numbers)
        """,
        ("assert sort_list([3, 1, 2]) == [1, 2, 3]", "assert sort_list([]) == []",
         "assert sort_list([5, -1, 5]) == [-1, 5, 5]"),
    ),
    _problem(
        "Write a function reverse_list(items) that returns a new list with the elements of items in reverse order.",
        """
        def reverse_list(items):
            return items[::-1]
        """,
        ("assert reverse_list([1, 2, 3]) == [3, 2, 1]", "assert reverse_list([]) == []",
         "assert reverse_list(['a', 'b']) == ['b', 'a']"),
    ),
    _problem(
        "Write a function join_words(words) that joins a list of words into one string separated by spaces.",
        """
        def join_words(words):
            return " ".join(words)
        """,
        ("assert join_words(['hello', 'world']) == 'hello world'", "assert join_words(['one']) == 'one'",
         "assert join_words([]) == ''"),
    ),
    _problem(
        "Write a function power(base, exponent) that returns base raised to the power exponent.",
        """
        def power(base, exponent):
            return base ** exponent
        """,
        ("assert power(2, 10) == 1024", "assert power(5, 0) == 1", "assert power(3, 3) == 27"),
    ),
    _problem(
        "Write a function contains_item(items, x) that returns True if x is in the list items.",
        """
        def contains_item(items, x):
            return x in items
        """,
        ("assert contains_item([1, 2, 3], 2) == True", "assert contains_item([1, 2, 3], 5) == False",
         "assert contains_item([], 0) == False"),
    ),
    _problem(
        "Write a function is_palindrome(s) that returns True if the string s reads the same backwards.",
        """
        def is_palindrome(s):
            return s == s[::-1]
        """,
        ("assert is_palindrome('level') == True", "assert is_palindrome('hello') == False",
         "assert is_palindrome('a') == True"),
    ),
    _problem(
        "Write a function word_count(sentence) that returns the number of words in a sentence.",
        """
        def word_count(sentence):
            return len(sentence.split())
        """,
        ("assert word_count('the quick brown fox') == 4", "assert word_count('hello') == 1",
         "assert word_count('') == 0"),
    ),
    _problem(
        "Write a function unique_sorted(items) that returns the distinct elements of items in ascending order.",
        """
        def unique_sorted(items):
            return sorted(set(items))
        """,
        ("assert unique_sorted([3, 1, 3, 2, 1]) == [1, 2, 3]", "assert unique_sorted([]) == []",
         "assert unique_sorted([7, 7]) == [7]"),
    ),
    _problem(
        "Write a function reverse_words(sentence) that returns the sentence with its words in reverse order.",
        """
        def reverse_words(sentence):
            return " ".join(reversed(sentence.split()))
        """,
        ("assert reverse_words('one two three') == 'three two one'", "assert reverse_words('hi') == 'hi'",
         "assert reverse_words('a b') == 'b a'"),
    ),
    _problem(
        "Write a function common_elements(a, b) that returns a sorted list of the elements found in both lists.",
        """
        def common_elements(a, b):
            return sorted(set(a) & set(b))
        """,
        ("assert common_elements([1, 2, 3], [2, 3, 4]) == [2, 3]", "assert common_elements([1], [2]) == []",
         "assert common_elements([5, 5, 6], [6, 5]) == [5, 6]"),
    ),
    _problem(
        "Write a function list_range(numbers) that returns the difference between the largest and smallest number.",
        """
        def list_range(numbers):
            return max(numbers) - min(numbers)
        """,
        ("assert list_range([3, 9, 1]) == 8", "assert list_range([4]) == 0", "assert list_range([-2, 2]) == 4"),
    ),
    # ---- one loop, comprehension or branch -----------------------------------------------------------
    _problem(
        "Write a function factorial(n) that returns the product of the integers from 1 to n (factorial(0) is 1).",
        """
        def factorial(n):
            result = 1
            for i in range(2, n + 1):
                result *= i
            return result
        """,
        ("assert factorial(5) == 120", "assert factorial(0) == 1", "assert factorial(1) == 1"),
    ),
    _problem(
        "Write a function squares_list(numbers) that returns a list of the squares of the numbers.",
        """
        def squares_list(numbers):
            return [n * n for n in numbers]
        """,
        ("assert squares_list([1, 2, 3]) == [1, 4, 9]", "assert squares_list([]) == []",
         "assert squares_list([-2]) == [4]"),
    ),
    _problem(
        "Write a function absolute_difference(a, b) that returns the distance between a and b without using abs.",
        """
        def absolute_difference(a, b):
            if a > b:
                return a - b
            return b - a
        """,
        ("assert absolute_difference(3, 8) == 5", "assert absolute_difference(8, 3) == 5",
         "assert absolute_difference(4, 4) == 0"),
    ),
    _problem(
        "Write a function digit_sum(n) that returns the sum of the decimal digits of a non-negative integer.",
        """
        def digit_sum(n):
            return sum(int(d) for d in str(n))
        """,
        ("assert digit_sum(123) == 6", "assert digit_sum(0) == 0", "assert digit_sum(9999) == 36"),
    ),
    _problem(
        "Write a function product_of_list(numbers) that multiplies all the numbers in a list (1 for an empty list).",
        """
        def product_of_list(numbers):
            product = 1
            for n in numbers:
                product *= n
            return product
        """,
        ("assert product_of_list([2, 3, 4]) == 24", "assert product_of_list([]) == 1",
         "assert product_of_list([5, 0, 2]) == 0"),
    ),
    _problem(
        "Write a function safe_divide(a, b) that returns a divided by b, or None when b is zero.",
        """
        def safe_divide(a, b):
            if b == 0:
                return None
            return a / b
        """,
        ("assert safe_divide(10, 2) == 5", "assert safe_divide(1, 0) is None", "assert safe_divide(3, 4) == 0.75"),
    ),
    _problem(
        "Write a function to compute the running totals of a list of numbers.",
        """
        def cumulative_sum(numbers):
            totals = []
            running = 0
            for n in numbers:
                running += n
                totals.append(running)
            return totals
        """,
        ("assert cumulative_sum([1, 2, 3]) == [1, 3, 6]", "assert cumulative_sum([]) == []",
         "assert cumulative_sum([5, -5, 5]) == [5, 0, 5]"),
    ),
    _problem(
        "Write a function to return the n-th Fibonacci number, where fibonacci(0) is 0 and fibonacci(1) is 1.",
        """
        def fibonacci(n):
            a, b = 0, 1
            for _ in range(n):
                a, b = b, a + b
            return a
        """,
        ("assert fibonacci(0) == 0", "assert fibonacci(1) == 1", "assert fibonacci(10) == 55"),
    ),
    _problem(
        "Write a function to find the greatest common divisor of two positive integers.",
        """
        def gcd(a, b):
            while b:
                a, b = b, a % b
            return a
        """,
        ("assert gcd(12, 18) == 6", "assert gcd(7, 5) == 1", "assert gcd(100, 25) == 25"),
    ),
    _problem(
        "Write a function to return the first character of every word in a list of words.",
        """
        def first_letters(words):
            return [word[0] for word in words]
        """,
        ("assert first_letters(['apple', 'banana']) == ['a', 'b']", "assert first_letters([]) == []",
         "assert first_letters(['x']) == ['x']"),
    ),
    _problem(
        "Write a function to return 'pass' when a score is at least 50 and 'fail' otherwise.",
        """
        def pass_or_fail(score):
            if score >= 50:
                return "pass"
            return "fail"
        """,
        ("assert pass_or_fail(75) == 'pass'", "assert pass_or_fail(50) == 'pass'", "assert pass_or_fail(49) == 'fail'"),
    ),
    # ---- a loop with a branch, or two branches ------------------------------------------------------
    _problem(
        "Write a function to return -1, 0 or 1 according to the sign of a number.",
        """
        def sign(n):
            if n > 0:
                return 1
            elif n < 0:
                return -1
            return 0
        """,
        ("assert sign(12) == 1", "assert sign(-3) == -1", "assert sign(0) == 0"),
    ),
    _problem(
        "Write a function to return the largest of three numbers without using max.",
        """
        def max_of_three(a, b, c):
            largest = a
            if b > largest:
                largest = b
            if c > largest:
                largest = c
            return largest
        """,
        ("assert max_of_three(1, 5, 3) == 5", "assert max_of_three(9, 2, 4) == 9", "assert max_of_three(1, 2, 8) == 8"),
    ),
    _problem(
        "Write a function to check whether a year is a leap year in the Gregorian calendar.",
        """
        def is_leap_year(year):
            return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        """,
        ("assert is_leap_year(2024) == True", "assert is_leap_year(1900) == False", "assert is_leap_year(2000) == True"),
    ),
    _problem(
        "Write a function to count the vowels (a, e, i, o, u, either case) in a string.",
        """
        def count_vowels(s):
            return sum(1 for ch in s.lower() if ch in "aeiou")
        """,
        ("assert count_vowels('Hello World') == 3", "assert count_vowels('rhythm') == 0",
         "assert count_vowels('AEIOU') == 5"),
    ),
    _problem(
        "Write a function to return the even numbers of a list, keeping their order.",
        """
        def filter_even(numbers):
            return [n for n in numbers if n % 2 == 0]
        """,
        ("assert filter_even([1, 2, 3, 4]) == [2, 4]", "assert filter_even([1, 3]) == []",
         "assert filter_even([0, -2, 5]) == [0, -2]"),
    ),
    _problem(
        "Write a function to count how many numbers in a list are strictly greater than a threshold.",
        """
        def count_greater(numbers, threshold):
            count = 0
            for n in numbers:
                if n > threshold:
                    count += 1
            return count
        """,
        ("assert count_greater([1, 5, 8, 2], 3) == 2", "assert count_greater([], 0) == 0",
         "assert count_greater([4, 4, 4], 4) == 0"),
    ),
    _problem(
        "Write a function to return the index of the first occurrence of a value in a list, or -1 if absent.",
        """
        def find_index(items, value):
            for index, item in enumerate(items):
                if item == value:
                    return index
            return -1
        """,
        ("assert find_index([4, 7, 9, 7], 7) == 1", "assert find_index([1, 2], 3) == -1",
         "assert find_index(['a', 'b'], 'a') == 0"),
    ),
    _problem(
        "Write a function to remove duplicates from a list while keeping the first occurrence of each element.",
        """
        def remove_duplicates(items):
            seen = set()
            result = []
            for item in items:
                if item not in seen:
                    seen.add(item)
                    result.append(item)
            return result
        """,
        ("assert remove_duplicates([3, 1, 3, 2, 1]) == [3, 1, 2]", "assert remove_duplicates([]) == []",
         "assert remove_duplicates(['a', 'a']) == ['a']"),
    ),
    _problem(
        "Write a function to return the longest word of a sentence (the first one on ties).",
        """
        def longest_word(sentence):
            best = ""
            for word in sentence.split():
                if len(word) > len(best):
                    best = word
            return best
        """,
        ("assert longest_word('a quick brown fox') == 'quick'", "assert longest_word('hi') == 'hi'",
         "assert longest_word('ab cd ef') == 'ab'"),
    ),
    _problem(
        "Write a function to count how often each character occurs in a string, as a dictionary.",
        """
        def char_frequency(s):
            counts = {}
            for ch in s:
                if ch in counts:
                    counts[ch] += 1
                else:
                    counts[ch] = 1
            return counts
        """,
        ("assert char_frequency('abca') == {'a': 2, 'b': 1, 'c': 1}", "assert char_frequency('') == {}",
         "assert char_frequency('zz') == {'z': 2}"),
    ),
    _problem(
        "Write a function to flatten a list whose elements are numbers or lists of numbers, one level deep.",
        """
        def flatten_once(items):
            flat = []
            for item in items:
                if isinstance(item, list):
                    flat.extend(item)
                else:
                    flat.append(item)
            return flat
        """,
        ("assert flatten_once([1, [2, 3], 4]) == [1, 2, 3, 4]", "assert flatten_once([]) == []",
         "assert flatten_once([[1], [2]]) == [1, 2]"),
    ),
    # ---- several branches or nested loops ------------------------------------------------------------
    _problem(
        "Write a function to check whether an integer is a prime number.",
        """
        def is_prime(n):
            if n < 2:
                return False
            for d in range(2, int(n ** 0.5) + 1):
                if n % d == 0:
                    return False
            return True
        """,
        ("assert is_prime(7) == True", "assert is_prime(1) == False", "assert is_prime(49) == False"),
    ),
    _problem(
        "Write a function that returns 'Fizz' for multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' for "
        "multiples of both, and the number as a string otherwise.",
        """
        def fizzbuzz(n):
            if n % 15 == 0:
                return "FizzBuzz"
            elif n % 3 == 0:
                return "Fizz"
            elif n % 5 == 0:
                return "Buzz"
            return str(n)
        """,
        ("assert fizzbuzz(9) == 'Fizz'", "assert fizzbuzz(30) == 'FizzBuzz'", "assert fizzbuzz(7) == '7'"),
    ),
    _problem(
        "Write a function to sort a list of numbers with bubble sort and return the sorted list.",
        """
        def bubble_sort(numbers):
            items = list(numbers)
            for i in range(len(items)):
                for j in range(len(items) - 1 - i):
                    if items[j] > items[j + 1]:
                        items[j], items[j + 1] = items[j + 1], items[j]
            return items
        """,
        ("assert bubble_sort([3, 1, 2]) == [1, 2, 3]", "assert bubble_sort([]) == []",
         "assert bubble_sort([5, 5, -1, 0]) == [-1, 0, 5, 5]"),
    ),
    _problem(
        "Write a function to find the index of a target in a sorted list with binary search, or -1 if absent.",
        """
        def binary_search(items, target):
            low, high = 0, len(items) - 1
            while low <= high:
                mid = (low + high) // 2
                if items[mid] == target:
                    return mid
                elif items[mid] < target:
                    low = mid + 1
                else:
                    high = mid - 1
            return -1
        """,
        ("assert binary_search([1, 3, 5, 7, 9], 7) == 3", "assert binary_search([1, 3, 5], 4) == -1",
         "assert binary_search([2], 2) == 0"),
    ),
    _problem(
        "Write a function to merge two sorted lists into one sorted list.",
        """
        def merge_sorted(a, b):
            merged = []
            i = j = 0
            while i < len(a) and j < len(b):
                if a[i] <= b[j]:
                    merged.append(a[i])
                    i += 1
                else:
                    merged.append(b[j])
                    j += 1
            return merged + a[i:] + b[j:]
        """,
        ("assert merge_sorted([1, 4, 6], [2, 3, 7]) == [1, 2, 3, 4, 6, 7]", "assert merge_sorted([], [1]) == [1]",
         "assert merge_sorted([2, 2], [2]) == [2, 2, 2]"),
    ),
    _problem(
        "Write a function to return the body-mass-index category: 'underweight' below 18.5, 'normal' below 25, "
        "'overweight' below 30 and 'obese' otherwise.",
        """
        def bmi_category(bmi):
            if bmi < 18.5:
                return "underweight"
            elif bmi < 25:
                return "normal"
            elif bmi < 30:
                return "overweight"
            return "obese"
        """,
        ("assert bmi_category(17.0) == 'underweight'", "assert bmi_category(22.5) == 'normal'",
         "assert bmi_category(31) == 'obese'"),
    ),
    _problem(
        "Write a function to run-length encode a string, e.g. 'aaab' becomes 'a3b1'.",
        """
        def run_length_encode(s):
            if not s:
                return ""
            parts = []
            current, count = s[0], 1
            for ch in s[1:]:
                if ch == current:
                    count += 1
                else:
                    parts.append(f"{current}{count}")
                    current, count = ch, 1
            parts.append(f"{current}{count}")
            return "".join(parts)
        """,
        ("assert run_length_encode('aaab') == 'a3b1'", "assert run_length_encode('') == ''",
         "assert run_length_encode('abba') == 'a1b2a1'"),
    ),
    _problem(
        "Write a function to shift every letter of a string forward in the alphabet by a given amount, wrapping "
        "around and keeping case; other characters stay as they are.",
        """
        def caesar_shift(text, shift):
            result = []
            for ch in text:
                if ch.isalpha():
                    base = ord("A") if ch.isupper() else ord("a")
                    result.append(chr((ord(ch) - base + shift) % 26 + base))
                else:
                    result.append(ch)
            return "".join(result)
        """,
        ("assert caesar_shift('abc', 1) == 'bcd'", "assert caesar_shift('Xyz!', 3) == 'Abc!'",
         "assert caesar_shift('hello', 26) == 'hello'"),
    ),
    _problem(
        "Write a function to multiply two matrices given as lists of rows.",
        """
        def matrix_multiply(a, b):
            rows, inner, cols = len(a), len(b), len(b[0])
            result = [[0] * cols for _ in range(rows)]
            for i in range(rows):
                for j in range(cols):
                    for k in range(inner):
                        result[i][j] += a[i][k] * b[k][j]
            return result
        """,
        ("assert matrix_multiply([[1, 2], [3, 4]], [[5, 6], [7, 8]]) == [[19, 22], [43, 50]]",
         "assert matrix_multiply([[2]], [[3]]) == [[6]]",
         "assert matrix_multiply([[1, 0, 2]], [[1], [2], [3]]) == [[7]]"),
    ),
    # ---- nested logic --------------------------------------------------------------------------------
    _problem(
        "Write a function to classify a triangle by its side lengths as 'equilateral', 'isosceles', 'scalene', "
        "or 'invalid' when the sides cannot form a triangle.",
        """
        def triangle_type(a, b, c):
            if a + b <= c or a + c <= b or b + c <= a:
                return "invalid"
            if a == b == c:
                return "equilateral"
            elif a == b or b == c or a == c:
                return "isosceles"
            return "scalene"
        """,
        ("assert triangle_type(3, 3, 3) == 'equilateral'", "assert triangle_type(3, 4, 5) == 'scalene'",
         "assert triangle_type(1, 2, 5) == 'invalid'"),
    ),
    _problem(
        "Write a function to return the number of days in a month of a given year.",
        """
        def days_in_month(month, year):
            if month == 2:
                if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
                    return 29
                return 28
            elif month in (4, 6, 9, 11):
                return 30
            return 31
        """,
        ("assert days_in_month(2, 2024) == 29", "assert days_in_month(2, 1900) == 28",
         "assert days_in_month(9, 2023) == 30"),
    ),
    _problem(
        "Write a function to check whether the brackets (), [] and {} in a string are balanced.",
        """
        def is_balanced(s):
            pairs = {")": "(", "]": "[", "}": "{"}
            stack = []
            for ch in s:
                if ch in "([{":
                    stack.append(ch)
                elif ch in pairs:
                    if not stack or stack.pop() != pairs[ch]:
                        return False
            return not stack
        """,
        ("assert is_balanced('([]{})') == True", "assert is_balanced('(]') == False",
         "assert is_balanced('((') == False"),
    ),
    _problem(
        "Write a function to check that a password has at least 8 characters, an upper-case letter, a "
        "lower-case letter and a digit.",
        """
        def is_strong_password(password):
            return (
                len(password) >= 8
                and any(ch.isupper() for ch in password)
                and any(ch.islower() for ch in password)
                and any(ch.isdigit() for ch in password)
            )
        """,
        ("assert is_strong_password('Secret123') == True", "assert is_strong_password('secret123') == False",
         "assert is_strong_password('Ab1') == False"),
    ),
    _problem(
        "Write a function to check whether a string is a valid IPv4 address: four decimal numbers from 0 to "
        "255 separated by dots, without leading zeros.",
        """
        def is_valid_ipv4(address):
            parts = address.split(".")
            if len(parts) != 4:
                return False
            for part in parts:
                if not part.isdigit():
                    return False
                if len(part) > 1 and part[0] == "0":
                    return False
                if int(part) > 255:
                    return False
            return True
        """,
        ("assert is_valid_ipv4('192.168.0.1') == True", "assert is_valid_ipv4('256.1.1.1') == False",
         "assert is_valid_ipv4('1.02.3.4') == False"),
    ),
    _problem(
        "Write a function to decide a rock-paper-scissors round: return 'draw', 'first' or 'second' for the "
        "winning player.",
        """
        def rps_winner(first, second):
            if first == second:
                return "draw"
            if (
                (first == "rock" and second == "scissors")
                or (first == "scissors" and second == "paper")
                or (first == "paper" and second == "rock")
            ):
                return "first"
            return "second"
        """,
        ("assert rps_winner('rock', 'scissors') == 'first'", "assert rps_winner('rock', 'paper') == 'second'",
         "assert rps_winner('paper', 'paper') == 'draw'"),
    ),
    _problem(
        "Write a function to summarise a sorted list of distinct integers as ranges, e.g. [1, 2, 3, 5] becomes "
        "'1-3,5'.",
        """
        def summarize_ranges(numbers):
            if not numbers:
                return ""
            parts = []
            start = prev = numbers[0]
            for n in numbers[1:] + [None]:
                if n is not None and n == prev + 1:
                    prev = n
                    continue
                parts.append(str(start) if start == prev else f"{start}-{prev}")
                if n is not None:
                    start = prev = n
            return ",".join(parts)
        """,
        ("assert summarize_ranges([1, 2, 3, 5]) == '1-3,5'", "assert summarize_ranges([4]) == '4'",
         "assert summarize_ranges([0, 1, 3, 4, 6]) == '0-1,3-4,6'"),
    ),
    _problem(
        "Write a function to convert a Roman numeral string to an integer.",
        """
        def roman_to_int(numeral):
            values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
            total = 0
            for i, ch in enumerate(numeral):
                value = values[ch]
                if i + 1 < len(numeral) and values[numeral[i + 1]] > value:
                    total -= value
                else:
                    total += value
            return total
        """,
        ("assert roman_to_int('XIV') == 14", "assert roman_to_int('MCMXCIV') == 1994", "assert roman_to_int('III') == 3"),
    ),
    _problem(
        "Write a function to return the longest common prefix of a list of strings.",
        """
        def longest_common_prefix(words):
            if not words:
                return ""
            prefix = words[0]
            for word in words[1:]:
                while not word.startswith(prefix):
                    prefix = prefix[:-1]
                    if not prefix:
                        return ""
            return prefix
        """,
        ("assert longest_common_prefix(['flower', 'flow', 'flight']) == 'fl'",
         "assert longest_common_prefix(['dog', 'car']) == ''", "assert longest_common_prefix(['same']) == 'same'"),
    ),
    _problem(
        "Write a function to compute income tax with a rate of 0 % up to 10000, 20 % on the part from 10000 to "
        "40000, and 40 % on the part above 40000.",
        """
        def income_tax(income):
            if income <= 10000:
                return 0
            elif income <= 40000:
                return (income - 10000) * 0.2
            return 30000 * 0.2 + (income - 40000) * 0.4
        """,
        ("assert income_tax(5000) == 0", "assert income_tax(20000) == 2000", "assert income_tax(50000) == 10000"),
    ),
    _problem(
        "Write a function to count the groups of horizontally or vertically connected 1s in a grid of 0s and 1s.",
        """
        def count_islands(grid):
            seen = set()
            count = 0
            for r in range(len(grid)):
                for c in range(len(grid[0])):
                    if grid[r][c] == 1 and (r, c) not in seen:
                        count += 1
                        stack = [(r, c)]
                        while stack:
                            i, j = stack.pop()
                            if (i, j) in seen or not (0 <= i < len(grid) and 0 <= j < len(grid[0])):
                                continue
                            if grid[i][j] != 1:
                                continue
                            seen.add((i, j))
                            stack.extend([(i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)])
            return count
        """,
        ("assert count_islands([[1, 1, 0], [0, 0, 1], [1, 0, 1]]) == 3", "assert count_islands([[0, 0]]) == 0",
         "assert count_islands([[1, 1], [1, 1]]) == 1"),
    ),
    _problem(
        "Write a function to turn a percentage score into a letter grade: 'A' from 90, 'B' from 80, 'C' from 70, "
        "'D' from 60 and 'F' below.",
        """
        def letter_grade(score):
            if score >= 90:
                return "A"
            elif score >= 80:
                return "B"
            elif score >= 70:
                return "C"
            elif score >= 60:
                return "D"
            return "F"
        """,
        ("assert letter_grade(95) == 'A'", "assert letter_grade(72) == 'C'", "assert letter_grade(12) == 'F'"),
    ),
    _problem(
        "Write a function to count the prime numbers smaller than n.",
        """
        def count_primes_below(n):
            count = 0
            for candidate in range(2, n):
                for d in range(2, int(candidate ** 0.5) + 1):
                    if candidate % d == 0:
                        break
                else:
                    count += 1
            return count
        """,
        ("assert count_primes_below(10) == 4", "assert count_primes_below(2) == 0", "assert count_primes_below(30) == 10"),
    ),
    _problem(
        "Write a function to compare two dotted version strings, returning -1, 0 or 1; missing parts count as 0.",
        """
        def compare_versions(a, b):
            left = [int(part) for part in a.split(".")]
            right = [int(part) for part in b.split(".")]
            length = max(len(left), len(right))
            left += [0] * (length - len(left))
            right += [0] * (length - len(right))
            for x, y in zip(left, right):
                if x < y:
                    return -1
                elif x > y:
                    return 1
            return 0
        """,
        ("assert compare_versions('1.2.10', '1.2.9') == 1", "assert compare_versions('1.0', '1') == 0",
         "assert compare_versions('0.9', '1.0') == -1"),
    ),
]

EMBEDDED_PROBLEMS: list[dict[str, Any]] = [
    {"task_id": task_id, **problem, "test_setup_code": "", "challenge_test_list": []}
    for task_id, problem in enumerate(_PROBLEMS, start=1)
]
